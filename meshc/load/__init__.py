"""Load stage: bytes of mesh.yaml -> plain data plus the position of every key and value."""

from meshc.load.source import SpecSource, read_spec_file
from meshc.load.positions import Positions
from meshc.load.yaml_loader import Loaded, load_yaml

__all__ = ["Loaded", "Positions", "SpecSource", "load_yaml", "read_spec_file"]
