"""Write a batch's objects into the QuPath projects themselves (`cellbridge batch … --write-to-project`), with paquo.

paquo (`pip install 'cellbridge[qupath]'`) runs QuPath's own Java classes, so the objects are QuPath's: each image's
QuPath GeoJSON is read by QuPath's `PathIO.readObjects` and placed by `PathObjectHierarchy.insertPathObjects`
(under the annotation that contains each object, as QuPath's "Resolve hierarchy" does). paquo's own
`hierarchy.load_geojson` reads annotations only (detections and cells fail in it), hence QuPath's reader through
paquo's JVM instead.

Per image entry:

* the objects an earlier write put there (their IDs are kept in `data/<entryID>/cellbridge-objects.json`) are
  removed, and nothing else: user annotations, objects drawn or detected in QuPath stay;
* the image data is serialised by QuPath (`PathIO.writeImageData`) into memory and written to `data.qpdata`
  atomically (temporary file + rename): the entry holds either its old data or the complete new data;
* the entry is marked with the run's signature in its metadata (`cellbridge.signature`, `cellbridge.model`, the
  keys the QuPath extension's batch uses), so a re-run leaves an image whose project already holds these results
  unchanged.

The ID file is written before the data with the old and new IDs, and after it with the new ones only, so an image
interrupted at any point is cleaned up by the next run instead of getting its objects twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellbridge.batch.projects import ProjectError, ProjectImage, paquo_available, start_paquo_quietly
from cellbridge.errors import CellBridgeError
from cellbridge.io.atomic import atomic_write

log = logging.getLogger(__name__)

SIGNATURE_KEY = "cellbridge.signature"
MODEL_KEY = "cellbridge.model"
OBJECTS_FILE = "cellbridge-objects.json"
DATA_FILE = "data.qpdata"
NEEDS = ("--write-to-project needs paquo and a QuPath installation: pip install 'cellbridge[qupath]', then QuPath "
         "0.6 where paquo finds it (or PAQUO_QUPATH_DIR=/path/to/QuPath)")


def check_available() -> None:
    """Raise a `CellBridgeError` saying what is missing when paquo cannot run QuPath here."""
    if not paquo_available():
        raise CellBridgeError(NEEDS)


@dataclass(frozen=True)
class WriteResult:
    """What writing one image did."""

    written: bool                 # False: the project already held these results
    removed: int                  # objects of an earlier write that were removed
    added: int                    # objects added


class ProjectWriter:
    """Writes images' GeoJSON objects into their projects' image data; opens each project once (`close` saves)."""

    def __init__(self, signature: str, model: str) -> None:
        check_available()
        self.signature = signature
        self.model = model
        self._projects: dict[Path, Any] = {}

    def __enter__(self) -> ProjectWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Forget the projects opened (each image's data and metadata were saved as it was written)."""
        self._projects = {}

    def write(self, image: ProjectImage, geojson: Path) -> WriteResult:
        """Replace the objects of an earlier write in `image`'s entry by those of `geojson`; atomic per image."""
        start_paquo_quietly()
        from paquo.java import ArrayList, ByteArrayOutputStream, PathIO  # type: ignore[import-not-found]
        from paquo.java import File as JavaFile

        project = self._project(image.project)
        entry = _entry(project, image)
        entry_dir = Path(entry.entry_path)
        entry_dir.mkdir(parents=True, exist_ok=True)
        state_file = entry_dir / OBJECTS_FILE
        state = _read_state(state_file)
        source = _stamp(geojson)
        if (state.get("complete") and state.get("signature") == self.signature and state.get("source") == source
                and entry.metadata.get(SIGNATURE_KEY) == self.signature):
            return WriteResult(False, 0, 0)

        image_data = entry.java_object.readImageData()
        try:
            hierarchy = image_data.getHierarchy()
            earlier_ids = set(state.get("ids", []))
            earlier = ArrayList()
            for obj in hierarchy.getAllObjects(False):
                if str(obj.getID()) in earlier_ids:
                    earlier.add(obj)
            if earlier.size():
                hierarchy.removeObjects(earlier, True)
            objects = PathIO.readObjects(JavaFile(str(geojson)))
            hierarchy.insertPathObjects(objects)
            new_ids = [str(obj.getID()) for obj in objects]
            _write_state(state_file, {"signature": self.signature, "complete": False,
                                      "ids": sorted(earlier_ids | set(new_ids))})
            buffer = ByteArrayOutputStream()
            PathIO.writeImageData(buffer, image_data)
            with atomic_write(entry_dir / DATA_FILE, "wb") as handle:
                handle.write(bytes(buffer.toByteArray()))
        finally:
            image_data.getServer().close()
        entry.metadata[SIGNATURE_KEY] = self.signature
        entry.metadata[MODEL_KEY] = self.model
        project.save(images=False)   # project.qpproj: the entry's metadata
        _write_state(state_file, {"signature": self.signature, "complete": True, "source": source, "ids": new_ids})
        return WriteResult(True, int(earlier.size()), len(new_ids))

    def _project(self, file: Path) -> Any:
        project = self._projects.get(file)
        if project is None:
            from paquo.projects import QuPathProject  # type: ignore[import-not-found]

            try:
                project = QuPathProject(file, mode="r+")
            except Exception as error:  # paquo/JPype raise many kinds
                raise ProjectError(f"{file}: paquo cannot open the project for writing "
                                   f"({type(error).__name__}: {error})") from None
            self._projects[file] = project
        return project


def _entry(project: Any, image: ProjectImage) -> Any:
    for entry in project.images:
        if entry.entry_id == image.entry_id:
            return entry
    raise ProjectError(f"{image.project}: no image entry {image.entry_id} ({image.name}) any more")


def _stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtimeNs": stat.st_mtime_ns}


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CellBridgeError(f"{path}: cannot read the IDs of the objects CellBridge wrote ({error}); "
                              "delete the file to keep those objects and add new ones") from None
    return state if isinstance(state, dict) else {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_write(path) as handle:
        json.dump(state, handle)
