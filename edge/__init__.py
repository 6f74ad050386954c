"""edge: an on-device vision-language agent runtime (camera -> Phi-3.5 -> MQTT)."""

__version__ = "0.1.0"
