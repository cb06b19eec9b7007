"""Packaging a converted model for an app: the bundle a build pipeline drops into the app."""
