"""The records that conversion writes and every later stage reads: the manifest tree, the recipe,
the accuracy budget, and the manifest found beside a model. No framework is imported here, so a
renderer or a packager that only reads JSON does not depend on the converter."""
