"""The output wing: rendering views and videos of an avatar, previews, CLIP evaluation, exports
(PLY, web page, glb) and the browser viewer."""
