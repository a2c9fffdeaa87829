"""Serving: the HTTP scoring server (``create_app``, in :mod:`rewardlab.serving.app`, needs the ``[serve]`` extra)
and the client that RL engines and users call (:mod:`rewardlab.serving.client`, needs only ``httpx``).

Nothing here is imported eagerly, so the client works without FastAPI installed.
"""
