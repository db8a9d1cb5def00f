"""Edge agents: read field devices on a gateway and publish normalised readings over MQTT."""
