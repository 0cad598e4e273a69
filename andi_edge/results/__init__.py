"""What a finished run means: photos as typed records, grouped into events, with repeat detections flagged.

The journal stores each photo's MegaDetector entry; this package reads those back into typed records and derives
what people review with: bursts/events per camera, probable false positives that recur at one place, and clock
checks. Sinks (batch JSON, sidecars, Camtrap DP, the HTML report) render the result; nothing here writes files.
"""
