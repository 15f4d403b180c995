"""The animate wing: motion files in the app, speech to motion, video-driven motion (face tracking
and fitting), ARKit curves, talking videos and the drive round-trip benchmark."""
