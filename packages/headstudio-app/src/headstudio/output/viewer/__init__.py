"""The browser viewer: ``headstudio view`` (a local server) and ``headstudio export --format web``.

The page (``packages/headstudio-app/web``, built into ``static/``) renders the rigged Gaussians
with Spark on three.js (WebGL2) and deforms them on the GPU from posed vertices, which come from
the server's head model over a websocket, or, in an exported folder, from baked motion and the
shipped head model.
"""

from .assets import ViewerData, build_viewer_data
from .server import ViewerServer

__all__ = ["ViewerData", "ViewerServer", "build_viewer_data"]
