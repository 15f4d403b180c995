"""ARKit's 52 blendshape names and Live Link Face's spelling of them (see :mod:`.arkit`)."""

from __future__ import annotations

__all__ = ["ARKIT_NAMES", "LIVE_LINK_NAMES", "LIVE_LINK_POSE_COLUMNS"]

#: ARKit's 52 blendshape names (camelCase, ``ARFaceAnchor.BlendShapeLocation``), in Live Link
#: Face's column order.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward", "jawRight",
    "jawLeft", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip
#: The same names as Live Link Face's CSV header spells them (PascalCase).
LIVE_LINK_NAMES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)
#: The head and eye rotation columns after the 52 curves (radians).
LIVE_LINK_POSE_COLUMNS: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
