"""Speech to FLAME motion: offline text to speech with phoneme timing (espeak-ng), audio features,
visemes, coarticulation and audio lip sync."""
