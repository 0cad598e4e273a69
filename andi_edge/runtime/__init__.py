"""The device runtime: decode -> letterbox -> backend -> head decoding -> NMS -> Detections.

Never imports torch, torchvision, ultralytics or ``andi_edge.toolchain`` (checked by import-linter in CI).
"""
