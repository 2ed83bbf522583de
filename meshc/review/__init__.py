"""Review tools: what a change to mesh.yaml means (diff), a picture of the mesh (graph), weight edits."""
