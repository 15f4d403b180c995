"""Animation: motion files in the app, speech to motion, video driving, ARKit curves."""
