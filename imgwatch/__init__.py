"""imgwatch: keep a folder of images, a SQL database and a WordPress media library in step."""

__version__ = "0.1.0"
