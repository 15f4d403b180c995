"""The quick demo: a hand-painted teacher avatar, its rendered targets and a short real training
run that recovers it."""
