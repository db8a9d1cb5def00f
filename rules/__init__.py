"""Rules engine: readings in, graded four-colour warnings out."""
