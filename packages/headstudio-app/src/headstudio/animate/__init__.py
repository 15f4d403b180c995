"""The animate wing: speech to motion, video-driven motion (face tracking and fitting), talking
videos and the drive round-trip benchmark."""
