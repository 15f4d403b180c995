"""The animate wing: motion files in the app, speech to motion, video-driven motion (face tracking
and fitting), talking videos, ARKit curves and the drive round-trip benchmark."""
