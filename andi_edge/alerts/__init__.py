"""Live alerts from what the watch daemon committed: rules, a store-and-forward queue, MQTT and webhooks."""
