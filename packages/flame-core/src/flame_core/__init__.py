"""flame_core: the FLAME head model in PyTorch, official files or an open procedural head; motions,
including speech-driven ones (offline text to speech and audio lip sync)."""

from flame_core.coarticulation import text_to_motion, utterance_to_motion
from flame_core.fitting import FitResult, fit_to_landmarks
from flame_core.io import FlameFileError, load_flame_pickle, save_flame_pickle
from flame_core.landmarks import LandmarkEmbedding
from flame_core.lipsync import audio_to_motion
from flame_core.model import FlameModel, FlameOutput
from flame_core.motion import MotionFileError, MotionSequence, procedural_talking_motion
from flame_core.speech import EspeakNotFoundError, SpeechError, Utterance, synthesize

__version__ = "0.1.0"

__all__ = [
    "FlameModel",
    "FlameOutput",
    "FlameFileError",
    "LandmarkEmbedding",
    "MotionSequence",
    "MotionFileError",
    "procedural_talking_motion",
    "fit_to_landmarks",
    "FitResult",
    "load_flame_pickle",
    "save_flame_pickle",
    "synthesize",
    "Utterance",
    "SpeechError",
    "EspeakNotFoundError",
    "text_to_motion",
    "utterance_to_motion",
    "audio_to_motion",
    "__version__",
]
