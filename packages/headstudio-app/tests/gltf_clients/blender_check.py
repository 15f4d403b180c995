"""Run inside Blender:
``blender --background --factory-startup --python blender_check.py -- FILE.glb OUTDIR``.

Imports the glb with Blender's own glTF importer, reports (one JSON line prefixed ``RESULT``) the
armature and its bones, the mesh's shape keys and the animation's frame range, then renders the
face from the front with Cycles twice: every shape key at 0 (``closed.png``) and ``jawOpen`` at 1
(``open.png``), and writes the camera's projection of the mouth landmarks' box (``mouth_box``).
"""

import json
import sys

import numpy

if not hasattr(numpy, "bool"):  # Blender 3.4's glTF importer still calls numpy.bool (removed in 1.24)
    numpy.bool = numpy.bool_

import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402

glb, outdir = sys.argv[sys.argv.index("--") + 1 :][:2]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=glb)
arm = [o for o in bpy.data.objects if o.type == "ARMATURE"]
meshes = [o for o in bpy.data.objects if o.type == "MESH" and o.data.shape_keys is not None]
result = {
    "armatures": [a.name for a in arm],
    "bones": [b.name for a in arm for b in a.data.bones],
    "shape_keys": [k.name for m in meshes for k in m.data.shape_keys.key_blocks],
    "actions": [[a.name, list(a.frame_range)] for a in bpy.data.actions],
}
head = meshes[0]
scene = bpy.context.scene
scene.frame_set(0)
for obj in bpy.data.objects:
    if obj.animation_data is not None:
        obj.animation_data.action = None
for mesh in meshes:
    if mesh.data.shape_keys.animation_data is not None:
        mesh.data.shape_keys.animation_data.action = None
for a in arm:  # the rest pose (unassigning an action keeps the last evaluated pose)
    for pb in a.pose.bones:
        pb.location = (0.0, 0.0, 0.0)
        pb.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
        pb.rotation_euler = (0.0, 0.0, 0.0)
        pb.scale = (1.0, 1.0, 1.0)
bpy.context.view_layer.update()
for o in [o for o in bpy.data.objects if o.type == "MESH" and o is not head]:
    o.hide_render = True  # the splat point cloud
# frame the face: bounding box of the mesh in world space (Blender is Z-up, the face looks along -Y)
pts = [head.matrix_world @ Vector(c) for c in head.bound_box]
lo = Vector([min(p[i] for p in pts) for i in range(3)])
hi = Vector([max(p[i] for p in pts) for i in range(3)])
centre = (lo + hi) / 2
size = max(hi.x - lo.x, hi.z - lo.z)
cam_data = bpy.data.cameras.new("cam")
cam_data.lens = 50
cam = bpy.data.objects.new("cam", cam_data)
scene.collection.objects.link(cam)
dist = 1.3 * size * cam_data.lens / cam_data.sensor_width
cam.location = (centre.x, lo.y - dist, centre.z)
cam.rotation_euler = (1.5708, 0.0, 0.0)
scene.camera = cam
for loc, energy in (((0.3, -1.0, 0.5), 3.0), ((-0.4, -0.8, 0.2), 1.5)):
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = energy
    sun.rotation_euler = (Vector((0, 0, 0)) - Vector(loc)).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(sun)
world = bpy.data.worlds.new("w")
world.use_nodes = True
world.node_tree.nodes["Background"].inputs[0].default_value = (0.8, 0.8, 0.8, 1.0)
world.node_tree.nodes["Background"].inputs[1].default_value = 0.6
scene.world = world
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 8
scene.cycles.use_denoising = False
scene.render.resolution_x = scene.render.resolution_y = 192
scene.render.image_settings.file_format = "PNG"
keys = head.data.shape_keys.key_blocks
for name, value in (("closed", 0.0), ("open", 1.0)):
    for k in keys:
        k.value = 0.0
    keys["jawOpen"].value = value
    scene.render.filepath = f"{outdir}/{name}.png"
    bpy.ops.render.render(write_still=True)
# where the mouth is in the image: the jawOpen key's moved vertices, projected by the camera
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402

basis = keys[0].data
moved = [i for i, (a, b) in enumerate(zip(basis, keys["jawOpen"].data)) if (a.co - b.co).length > 2e-3]
uv = [world_to_camera_view(scene, cam, head.matrix_world @ basis[i].co) for i in moved]
result["mouth_box"] = (
    [min(p.x for p in uv), min(p.y for p in uv), max(p.x for p in uv), max(p.y for p in uv)] if uv else None
)
print("RESULT " + json.dumps(result), flush=True)
