"""Simulators of every field device, of Twilio's REST API, and of whole drills."""
