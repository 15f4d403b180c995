"""glTF 2.0 binary export: KHR_gaussian_splatting splats, a skinned textured mesh with ARKit
morph targets, animations."""
