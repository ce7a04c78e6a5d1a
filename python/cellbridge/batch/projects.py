"""Read QuPath projects (`project.qpproj`) without QuPath: the image entries and the files they point at.

QuPath 0.6 writes `project.qpproj` as JSON (`DefaultProject.writeProject`):

    {"version": "0.6.0", "createTimestamp": ..., "modifyTimestamp": ..., "uri": "file:/old/place/project.qpproj",
     "lastID": 3,
     "images": [{"serverBuilder": {"builderType": "uri",
                                   "providerClassName": "qupath.lib.images.servers.openslide.OpenslideServerBuilder",
                                   "uri": "file:/slides/a.svs", "args": [], "metadata": {...}},
                 "entryID": 1, "randomizedName": "…", "imageName": "a.svs", "metadata": {}, "tags": []}, …]}

and keeps each entry's data in `data/<entryID>/` (`data.qpdata`, `server.json` with the same server builder,
`summary.json`, `thumbnail.jpg`). An entry's pixels come from its server builder: a `uri` builder names the file;
other builder types (`rotated`, `affine`, `color`, `channels`, …) transform the pixels, which only QuPath can
reproduce, and are reported as unsupported. A project that was moved is handled as QuPath does: a missing file
is looked up at the same place relative to the project's new folder.

`read_project` uses paquo (QuPath's own Java classes through JPype) when paquo is installed *and* finds a
QuPath installation; otherwise, and with `reader="json"`, it reads the JSON itself.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from cellbridge.errors import CellBridgeError

log = logging.getLogger(__name__)

PROJECT_FILE = "project.qpproj"
READERS = ("auto", "json", "paquo")
PAQUO_INSTALL = ("pip install paquo (in the environment that runs cellbridge), and a QuPath it can find: QuPath "
                 "installed in its default place, or `paquo get_qupath --install-path DIR 0.6.0` (it prints how to "
                 "point paquo at that copy)")
#: server builder types that keep the file's pixels unchanged (a generated pyramid reads the same pixels)
PASS_THROUGH_BUILDERS = ("pyramidize",)


class ProjectError(CellBridgeError):
    """A QuPath project cannot be read."""


@dataclass(frozen=True)
class ProjectImage:
    """One image entry of a QuPath project, with the local file it reads (or why there is none)."""

    project: Path                 # the project.qpproj file
    entry_id: str                 # QuPath's entry ID (the name of its folder under data/)
    name: str                     # the image name shown in QuPath
    uri: str | None               # the server builder's URI, as stored
    path: Path | None             # the local file, when the URI names one
    problem: str | None = None    # why this entry cannot be read by CellBridge (None: it can, as far as we know)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A key unique across projects: the project file and the entry ID."""
        return f"{self.project}#{self.entry_id}"


@dataclass(frozen=True)
class QuPathProject:
    """A QuPath project's file, name and image entries in QuPath's order."""

    file: Path
    name: str
    version: str | None
    images: list[ProjectImage]
    reader: str                   # "json" or "paquo"


def project_file(path: str | os.PathLike[str]) -> Path:
    """The `project.qpproj` for a path that is either that file or the project's folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / PROJECT_FILE
    if not path.exists():
        raise ProjectError(f"{path}: no such QuPath project (expected a project.qpproj file or its folder)")
    if not path.is_file():
        raise ProjectError(f"{path}: not a file")
    return path.absolute()


def read_project(path: str | os.PathLike[str], reader: str = "auto") -> QuPathProject:
    """Read a QuPath project's image entries: with paquo when it can run QuPath, else from the JSON files."""
    if reader not in READERS:
        raise ProjectError(f"unknown project reader {reader!r}; expected one of {', '.join(READERS)}")
    file = project_file(path)
    if reader == "paquo" and not paquo_installed():
        raise ProjectError(f"--reader paquo needs the paquo package, which is not installed: {PAQUO_INSTALL}; "
                           "or use --reader json")
    if reader == "paquo" or (reader == "auto" and paquo_available()):
        try:
            return _read_with_paquo(file)
        except Exception as error:  # paquo/JPype raise many kinds; the JSON reader is the fallback
            if reader == "paquo":
                raise ProjectError(f"{file}: paquo cannot read the project ({type(error).__name__}: {error})") from None
            log.warning("%s: paquo failed (%s); reading the project JSON directly", file, error)
    return _read_json_project(file)


# ------------------------------------------------------------------------------------------------ JSON reader


def _read_json_project(file: Path) -> QuPathProject:
    data = _load_json(file, "project")
    if not isinstance(data, dict):
        raise ProjectError(f"{file}: not a QuPath project (the JSON is not an object)")
    version = data.get("version")
    if version is None and "lastID" not in data:
        raise ProjectError(f"{file}: not a QuPath project (no 'version' or 'lastID'; written by a QuPath older "
                           "than 0.2?)")
    entries = data.get("images", [])
    if not isinstance(entries, list):
        raise ProjectError(f"{file}: 'images' must be a list")
    old_base = _old_project_folder(data.get("uri"))
    images = [_json_entry(file, entry, i, old_base) for i, entry in enumerate(entries)]
    return QuPathProject(file, file.parent.name, version if isinstance(version, str) else None, images, "json")


def _json_entry(file: Path, entry: Any, index: int, old_base: Path | None) -> ProjectImage:
    if not isinstance(entry, dict):
        return ProjectImage(file, str(index), f"entry {index}", None, None, f"image entry {index} is not an object")
    entry_id = str(entry.get("entryID", index + 1))
    name = entry.get("imageName") or f"Image {entry_id}"
    metadata = entry.get("metadata") if isinstance(entry.get("metadata"), dict) else {}
    builder = entry.get("serverBuilder")
    if not isinstance(builder, dict):
        builder = _server_json(file.parent / "data" / entry_id / "server.json")
    if not isinstance(builder, dict):
        return ProjectImage(file, entry_id, name, None, None, "the entry has no server builder, and "
                            f"data/{entry_id}/server.json is missing or unreadable", metadata)
    uri, problem = _builder_uri(builder)
    path = None
    if uri is not None and problem is None:
        path, problem = _local_file(uri, file.parent, old_base)
    return ProjectImage(file, entry_id, str(name), uri, path, problem, {str(k): str(v) for k, v in metadata.items()})


def _server_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return _load_json(path, "server builder")
    except ProjectError as error:
        log.warning("%s", error)
        return None


def _builder_uri(builder: dict) -> tuple[str | None, str | None]:
    """The image URI of a server builder, or why CellBridge cannot read its pixels."""
    kind = builder.get("builderType", "uri" if "uri" in builder else None)
    if kind in PASS_THROUGH_BUILDERS and isinstance(builder.get("builder"), dict):
        return _builder_uri(builder["builder"])
    if kind != "uri":
        return None, (f"the image is built by QuPath's '{kind}' server (transformed or combined pixels); only QuPath "
                      "can read it: run CellBridge from QuPath instead")
    uri = builder.get("uri")
    if not isinstance(uri, str) or not uri:
        return None, "the server builder has no 'uri'"
    series = _series(builder.get("args"))
    if series not in (None, 0):
        return uri, (f"the image is series {series} of a multi-image file; only QuPath (Bio-Formats) can read "
                     "that series: run CellBridge from QuPath instead")
    return uri, None


def _series(args: Any) -> int | None:
    if not isinstance(args, list):
        return None
    for flag, value in zip(args, args[1:]):
        if flag == "--series":
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


def uri_to_path(uri: str) -> Path | None:
    """The local path of a `file:` URI as Java writes it (`file:/a/b c.tif` is `file:/a/b%20c.tif`); else None."""
    parsed = urlparse(uri)
    if parsed.scheme.lower() != "file":
        return None
    if parsed.netloc and parsed.netloc.lower() != "localhost":
        return Path(url2pathname(f"//{parsed.netloc}{parsed.path}"))   # a UNC share: \\host\share\…
    text = unquote(parsed.path)
    if re.match(r"^/[A-Za-z]:", text):  # file:/C:/slides/a.svs
        return Path(PureWindowsPath(text[1:])) if os.name == "nt" else Path(text[1:])
    return Path(url2pathname(parsed.path)) if os.name == "nt" else Path(text)


def _old_project_folder(uri: Any) -> Path | None:
    if not isinstance(uri, str):
        return None
    path = uri_to_path(uri)
    return None if path is None else path.parent


def _local_file(uri: str, base: Path, old_base: Path | None) -> tuple[Path | None, str | None]:
    path = uri_to_path(uri)
    if path is None:
        return None, (f"the image URI {uri} is not a local file; only QuPath can read it: run CellBridge from "
                      "QuPath instead")
    if path.exists():
        return path, None
    if old_base is not None:  # the project (with its images) was moved: same place relative to the project
        try:
            moved = base / path.relative_to(old_base)
        except ValueError:
            moved = None
        if moved is not None and moved.exists():
            return moved, None
    return path, f"image file {path} does not exist"


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise ProjectError(f"{path}: cannot read the {what} file ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProjectError(f"{path}: the {what} file is not valid JSON ({error})") from None


# ----------------------------------------------------------------------------------------------- paquo reader


def paquo_installed() -> bool:
    """True when the paquo package can be imported."""
    import importlib.util

    return importlib.util.find_spec("paquo") is not None


def paquo_available() -> bool:
    """True when paquo is installed and finds a QuPath installation (paquo runs QuPath's own Java classes)."""
    if not paquo_installed():
        return False
    try:
        from paquo import settings  # type: ignore[import-not-found]
        # paquo's own CLI turns its settings into find_qupath's arguments this way
        from paquo._config import to_kwargs  # type: ignore[import-not-found]
        from paquo.jpype_backend import find_qupath  # type: ignore[import-not-found]

        find_qupath(**to_kwargs(settings))   # where paquo looks: PAQUO_QUPATH_DIR, .paquo.toml, default dirs
    except Exception:  # paquo raises ValueError when no QuPath is found; any failure means "not usable"
        return False
    return True


LOGBACK_WARNINGS = Path(__file__).with_name("logback-warnings.xml")


@functools.cache
def start_paquo_quietly() -> None:
    """Once per process: start paquo's JVM with the QuPath classes' log kept off stdout, where a command prints
    its one JSON document. The JVM starts with `LOGBACK_WARNINGS` as logback's configuration (QuPath's logger:
    warnings and errors only, on stderr; unless paquo's java_opts name another), with file descriptor 1 pointing
    at stderr meanwhile; afterwards the root logger is set to warnings on stderr again, since QuPath's GUI log
    manager, when installed, changes it. Without a logback configuration every DEBUG line would go to stdout."""
    if "paquo.java" not in sys.modules:
        from paquo import settings  # type: ignore[import-not-found]

        options = settings.java_opts
        options = shlex.split(options) if isinstance(options, str) else list(options)
        if not any(option.startswith("-Dlogback.configurationFile=") for option in options):
            settings.set("java_opts", [*options, f"-Dlogback.configurationFile={LOGBACK_WARNINGS}"])
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            import paquo.java  # type: ignore[import-not-found]  # noqa: F401  (starts the JVM)
            import paquo.projects  # type: ignore[import-not-found]  # noqa: F401  (sets QuPath's log level)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    from jpype import JClass  # type: ignore[import-not-found]

    root = JClass("org.slf4j.LoggerFactory").getLogger("ROOT")
    try:
        if not isinstance(root, JClass("ch.qos.logback.classic.Logger")):
            return
        level, console = JClass("ch.qos.logback.classic.Level"), JClass("ch.qos.logback.core.ConsoleAppender")
    except Exception:  # another slf4j binding: its own configuration stands
        return
    root.setLevel(level.WARN)
    appenders = root.iteratorForAppenders()
    while appenders.hasNext():
        appender = appenders.next()
        if isinstance(appender, console) and str(appender.getTarget()) != "System.err":
            appender.stop()
            appender.setTarget("System.err")
            appender.start()


def _read_with_paquo(file: Path) -> QuPathProject:
    start_paquo_quietly()
    from paquo.projects import QuPathProject as PaquoProject  # type: ignore[import-not-found]

    images = []
    with PaquoProject(file, mode="r") as project:
        for i, entry in enumerate(project.images):
            entry_id = str(getattr(entry, "entry_id", i + 1))
            uri = str(entry.uri) if getattr(entry, "uri", None) else None
            path, problem = (None, "the entry has no image URI") if uri is None else \
                _local_file(uri, file.parent, None)
            metadata = {str(k): str(v) for k, v in dict(getattr(entry, "metadata", {}) or {}).items()}
            images.append(ProjectImage(file, entry_id, str(entry.image_name), uri, path, problem, metadata))
        version = str(getattr(project, "version", "")) or None
    return QuPathProject(file, file.parent.name, version, images, "paquo")
