"""flame_core: the FLAME head model in PyTorch, official files or an open procedural head; landmarks,
fitting and motion files. (Speech to motion lives in the app: ``headstudio.animate.speech``.)"""

from flame_core.fitting import FitResult, fit_to_landmarks
from flame_core.io import FlameFileError, load_flame_pickle, save_flame_pickle
from flame_core.landmarks import LandmarkEmbedding
from flame_core.model import FlameModel, FlameOutput
from flame_core.motion import MotionFileError, MotionSequence, procedural_talking_motion
from flame_core.params import FlameParams

__version__ = "0.1.0"

__all__ = [
    "FlameModel",
    "FlameOutput",
    "FlameParams",
    "FlameFileError",
    "LandmarkEmbedding",
    "MotionSequence",
    "MotionFileError",
    "procedural_talking_motion",
    "fit_to_landmarks",
    "FitResult",
    "load_flame_pickle",
    "save_flame_pickle",
    "__version__",
]
