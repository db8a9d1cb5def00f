"""Edge agents: read field devices on a gateway and publish normalised readings over MQTT."""

# yujing.config composes edge.config; loading it first keeps `import edge.x` free of an import cycle.
import yujing.config  # noqa: F401
