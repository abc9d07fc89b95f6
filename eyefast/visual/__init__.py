"""Looking at a trained head: renders from any camera under any lights (:mod:`~eyefast.visual.render`,
``eyefast render``), turntables, and the live browser viewer (:mod:`~eyefast.visual.viewer`,
``eyefast view``). Depends on :mod:`eyefast.run`, :mod:`eyefast.scene` and :mod:`eyefast.export`;
nothing depends on it but the command line."""
