"""Output: rendering, videos and exports (PLY, web, glb)."""
