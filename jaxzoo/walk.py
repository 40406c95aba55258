"""Walking image folders: every real folder once, symlinks followed without loops.

Folder datasets (``jaxzoo.data.folder``, for training and evaluation) and ``predict`` list
images with ``walk``. ``os.walk(followlinks=True)``, which torchvision's ImageFolder uses, walks
a symlink to a folder above it again and again (``ln -s .. red/loop`` turned 20 files into
9,020, and two such links never end). Here a symlinked folder is followed only when the folder
it leads to has not been walked yet by any path; the links left alone are returned, for the
caller to report. This module imports neither TensorFlow nor the rest of jaxzoo (``jaxzoo.data``
imports TensorFlow), so ``predict`` lists folders without loading it.
"""
import concurrent.futures
import dataclasses
import operator
import os

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                    ".webp")

# (directory, [(path, size, mtime_ns)]): one folder's image files, sorted by name; size and
# mtime_ns are -1 when the walk does not stat files or a file's stat failed (a broken link).
Group = tuple[str, list[tuple[str, int, int]]]


@dataclasses.dataclass
class Listing:
    """What ``walk`` found: per top folder, its folders' image files in depth-first order (sub-
    folders by name); the symlinked folders not followed, as "link -> target": ``loops`` lead to
    a folder on their own path, ``repeats`` to one walked through another path."""

    files: list[list[Group]]
    loops: list[str] = dataclasses.field(default_factory=list)
    repeats: list[str] = dataclasses.field(default_factory=list)

    def not_followed_message(self) -> str:
        """One line about the links left alone ("" when none)."""
        count = len(self.loops) + len(self.repeats)
        if not count:
            return ""
        kinds = [f"{len(links)} {kind} (e.g. {links[0]})" for kind, links in
                 [("symlink_loop", self.loops), ("symlink_repeat", self.repeats)] if links]
        return (f"{count} symlinked folder(s) not followed, as they lead to a folder walked "
                f"already: {', '.join(kinds)}")


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _scan(directory: str, extensions, stat: bool):
    """One folder: its image files (sorted, with size and mtime_ns when ``stat``), its real
    sub-folders as (path, identity) and its symlinked sub-folders, both sorted by name."""
    files, subdirs, links = [], [], []
    try:
        entries = sorted(os.scandir(directory), key=operator.attrgetter("name"))
    except OSError:  # no permission, or removed meanwhile: nothing to list, as os.walk does
        return files, subdirs, links
    for entry in entries:
        if entry.name.startswith("."):  # hidden files and folders
            continue
        try:
            is_dir = entry.is_dir()  # follows symlinks; a broken one is not a folder
        except OSError:
            is_dir = False
        if is_dir:
            if entry.is_symlink():
                links.append(entry.path)
            else:
                try:  # DirEntry.stat is an lstat of the path: a mount point's own identity
                    subdirs.append((entry.path, _identity(entry.stat(follow_symlinks=False))))
                except OSError:
                    pass
        elif entry.name.lower().endswith(extensions):
            size = mtime = -1
            if stat:
                try:
                    info = entry.stat()  # of the file a symlink leads to
                    size, mtime = info.st_size, info.st_mtime_ns
                except OSError:
                    pass
            files.append((entry.path, size, mtime))
    return files, subdirs, links


def _walk_real(top: str, identity, visited: set, extensions, stat: bool):
    """The folders under ``top`` reached without following symlinks, depth first, skipping any
    in ``visited`` (a bind mount can loop too); adds theirs to ``visited``. Returns the groups,
    the identity of each folder walked by path, and the symlinked folders met, in order."""
    groups, identities, links = [], {}, []
    stack = [(top, identity)]
    while stack:
        directory, ident = stack.pop()
        if ident in visited and directory != top:
            continue
        visited.add(ident)
        identities[directory] = ident
        files, subdirs, sublinks = _scan(directory, extensions, stat)
        if files:
            groups.append((directory, files))
        links += sublinks
        stack += reversed(subdirs)  # popped in name order
    return groups, identities, links


def walk(tops, *, ancestors=(), extensions=IMAGE_EXTENSIONS, stat: bool = False,
         threads: int | None = None) -> Listing:
    """The image files under each folder of ``tops`` (hidden files and folders left out).

    Each real folder is walked once: first every top without following symlinks (in parallel,
    one top per thread), then the symlinked folders met, in order; one whose target was walked
    already, is a top or one of ``ancestors`` (say the dataset's root) is not followed but
    listed in the result. ``stat``: also read each file's size and mtime_ns."""
    tops = [os.fspath(top) for top in tops]
    path_identity = {}  # folder path (as walked) -> (st_dev, st_ino)
    for folder in [os.fspath(a) for a in ancestors] + tops:
        try:
            path_identity[folder] = _identity(os.stat(folder))
        except OSError:
            pass
    reserved = set(path_identity.values())

    def walk_top(top):
        visited = reserved - {path_identity.get(top)}
        return _walk_real(top, path_identity.get(top), visited, extensions, stat)

    workers = threads or min(8, (os.cpu_count() or 1) * 2, max(1, len(tops)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        walked = list(pool.map(walk_top, tops))
    files, queue, visited = [], [], set(reserved)
    for index, (groups, identities, links) in enumerate(walked):
        files.append(groups)
        path_identity.update(identities)
        visited.update(identities.values())
        queue += [(index, link) for link in links]

    listing = Listing(files)
    while queue:  # breadth first: links met inside a followed link come after the others
        index, link = queue.pop(0)
        try:
            ident, target = _identity(os.stat(link)), os.readlink(link)
        except OSError:  # removed meanwhile
            continue
        if ident in visited:
            on_path = {path_identity.get(parent) for parent in _parents(link)}
            (listing.loops if ident in on_path else listing.repeats).append(f"{link} -> {target}")
            continue
        groups, identities, links = _walk_real(link, ident, visited, extensions, stat)
        files[index] += groups
        path_identity.update(identities)
        queue += [(index, sub) for sub in links]
    for groups in files:  # path components in order: depth first, sub-folders by name
        groups.sort(key=lambda group: group[0].split(os.sep))
    return listing


def _parents(path: str):
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return
        yield parent
        path = parent
