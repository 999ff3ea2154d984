"""Data sets named by a Hub id: ``data.path: hf://datasets/<owner>/<name>[@<revision>][/<folder>]``.

Why a download and then the local readers, rather than ``datasets.load_dataset``: one reading path. The
repository's files go through exactly the readers a local folder goes through (table, RecBole, Amazon; the
same id spelling rules, deduplication, k-core and leave-one-out), so a data set loaded by its Hub id is
cut into the same splits as the folder it was pushed from, by construction. ``datasets``' type inference
would read an id column of ``0003`` as the number 3 and join it to other items than the folder did.

The path is the Hub's own URI syntax (``huggingface_hub.parse_hf_uri``, the one ``HfFileSystem``, pandas
and ``datasets`` accept), so the revision (a branch, tag or commit) travels inside ``data.path``; a run first
pins a branch or tag to the commit it names (``pin_hub_revision``), so its ``recipe.yaml`` names exactly what
it read. Only the readable data files at the top of the named folder are downloaded (``snapshot_download``
into the Hub cache, once: after that ``HF_HUB_OFFLINE=1`` reads the cached copy); nothing is downloaded that
the recipe does not name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants, parse_hf_uri, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HfUriError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .config import DataConfig
from .readers import TABLE_SUFFIXES, DataFormatError

HUB_PREFIX = "hf://"
_COMMIT = re.compile(r"[0-9a-f]{40}")  # a full commit hash: the one kind of revision that cannot move
DATA_SUFFIXES = (*TABLE_SUFFIXES, ".inter", ".item")  # every file one of the readers can read
READABLE = (
    "interactions.* and items.* (CSV, Parquet or JSON Lines), RecBole <name>.inter + <name>.item, or Amazon review JSON"
)


@dataclass(frozen=True)
class HubDataPath:
    """Where a data set is on the Hub: a dataset repository, a revision (None: main) and a path inside it."""

    repo_id: str
    revision: str | None
    path_in_repo: str
    url: str

    @property
    def folder(self) -> str:
        """The folder inside the repository whose files are read ('' for the repository's root)."""
        return self.path_in_repo.rpartition("/")[0] if self.names_a_file else self.path_in_repo

    @property
    def names_a_file(self) -> bool:
        return self.path_in_repo.lower().endswith(DATA_SUFFIXES)

    @property
    def name(self) -> str:
        """The data set's name, as a local folder's name would be: the folder's (or the repository's) own name."""
        return self.folder.rpartition("/")[2] if self.folder else self.repo_id.split("/", 1)[1]


def is_hub_path(path: str) -> bool:
    """True for a ``data.path`` that names the Hub (``hf://...``) rather than a local folder or file."""
    return str(path).startswith(HUB_PREFIX)


def parse_hub_data_path(path: str) -> HubDataPath:
    """``hf://datasets/<owner>/<name>[@<revision>][/<path>]`` -> :class:`HubDataPath`; a clear error otherwise."""
    try:
        uri = parse_hf_uri(path)
    except HfUriError as error:
        raise DataFormatError(
            f"data.path {path!r} is not a Hub dataset id ({error}); write it as hf://datasets/<owner>/<name>, "
            "optionally with @<revision> after the name and a folder inside the repository after that"
        ) from None
    if uri.type != "dataset":
        raise DataFormatError(
            f"data.path {path!r} names a {uri.type} repository, not a data set; data sets on the Hub are read from "
            f"dataset repositories: hf://datasets/{uri.id}"
        )
    return HubDataPath(uri.id, uri.revision, uri.path_in_repo.strip("/"), path)


def pin_hub_revision(config: DataConfig, say=print) -> None:
    """Rewrite a ``data.path`` on the Hub that names a branch or tag (or none: main) to the commit it names now.

    Why: a branch moves. A run's ``recipe.yaml`` must name the data it read, not whatever ``main`` holds
    later, and the collaborative SASRec cached for this data (keyed by the data settings) must not be reused
    for other files pushed to the same branch. A path that already names a full commit is left as it is.
    """
    if not is_hub_path(config.path):
        return
    hub = parse_hub_data_path(config.path)
    if hub.revision and _COMMIT.fullmatch(hub.revision):
        return
    _, snapshot = _download(config, hub)
    inside = f"/{hub.path_in_repo}" if hub.path_in_repo else ""
    pinned = f"{HUB_PREFIX}datasets/{hub.repo_id}@{snapshot.name}{inside}"
    say(f"data: {config.path} is commit {snapshot.name} of dataset {hub.repo_id}; the run reads {pinned}")
    config.path = pinned


def download_hub_data(config: DataConfig, verbose: bool = True) -> tuple[Path, str]:
    """(local path the readers read, data set name) for a ``data.path`` on the Hub.

    Downloads the readable data files at the top of the named folder (and the files that
    ``data.interactions_file`` / ``data.items_file`` name there) into the Hub cache, or finds them there.
    """
    hub = parse_hub_data_path(config.path)
    root, snapshot = _download(config, hub)
    if verbose:
        print(f"data: {hub.url} is commit {snapshot.name} of dataset {hub.repo_id} (Hub cache: {snapshot})")
    return root, hub.name


def _download(config: DataConfig, hub: HubDataPath) -> tuple[Path, Path]:
    """(the path the readers read, the snapshot folder, named by its commit) of the data files ``config`` names."""
    prefix = f"{hub.folder}/" if hub.folder else ""
    named = [name for name in (config.interactions_file, config.items_file) if name]
    for name in named:
        if "/" in name or "\\" in name:
            raise DataFormatError(
                f"data.interactions_file / data.items_file {name!r} is a path; on the Hub they name a file in the "
                f"folder that data.path names: put the folder in data.path ({hub.url}/{Path(name).parent.as_posix()})"
            )
    patterns = [f"{prefix}*{suffix}" for suffix in DATA_SUFFIXES] + [prefix + name for name in named]
    # fnmatch's * crosses '/': the folder's subfolders are left out by name. Files named explicitly still match:
    # they hold no '/' after the prefix.
    snapshot = Path(_snapshot(hub, patterns, ignore=[f"{prefix}*/*"]))
    directory = snapshot / prefix if prefix else snapshot
    present = sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []
    if not present:
        raise FileNotFoundError(
            f"{hub.url} holds no data file that sidrec reads{' in ' + hub.folder if prefix else ''} "
            f"({_listing(hub, snapshot.name)}); a data set on the Hub needs {READABLE}. Upload a data folder with "
            f"`sidrec push-dataset <folder> {hub.repo_id}`, or name the folder of the repository that holds "
            f"the files: hf://datasets/{hub.repo_id}/<folder>"
        )
    for setting, name in (("interactions_file", config.interactions_file), ("items_file", config.items_file)):
        if name and name not in present:
            raise FileNotFoundError(
                f"data.{setting}={name!r} is not in {hub.url} (commit {snapshot.name[:12]}), whose data files are "
                f"{', '.join(present)}; check data.{setting} (a file name in that folder of the repository)"
            )
    root = snapshot / hub.path_in_repo if hub.path_in_repo else snapshot
    if hub.names_a_file and not root.is_file():
        raise FileNotFoundError(
            f"{hub.path_in_repo} is not in {hub.url} (commit {snapshot.name[:12]}), whose data files there are "
            f"{', '.join(present)}; fix the file name at the end of data.path"
        )
    return root, snapshot


def _snapshot(hub: HubDataPath, patterns: list[str], ignore: list[str]) -> str:
    """``snapshot_download`` of the data files; the Hub client's failures become errors that say what to do."""
    revision = hub.revision or constants.DEFAULT_REVISION
    try:
        return snapshot_download(
            hub.repo_id, repo_type="dataset", revision=revision, allow_patterns=patterns, ignore_patterns=ignore
        )
    except RevisionNotFoundError:
        raise FileNotFoundError(
            f"revision {revision!r} not found in the dataset repository {hub.repo_id} ({hub.url}); name one of its "
            f"branches, tags or commits after '@' (hf://datasets/{hub.repo_id}@main), or leave '@{revision}' out "
            "to read main"
        ) from None
    except GatedRepoError:
        raise FileNotFoundError(
            f"the dataset repository {hub.repo_id} ({hub.url}) is gated: accept its conditions on its page on the Hub, "
            "then log in (`hf auth login`, or set HF_TOKEN) with that account"
        ) from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"dataset repository {hub.repo_id} not found on {constants.ENDPOINT} ({hub.url}), or it is private and "
            "no token with access to it was given. Check the id in data.path; for a private repository log in "
            f"(`hf auth login`, or set HF_TOKEN); to put a local data folder there: sidrec push-dataset <folder> "
            f"{hub.repo_id}"
        ) from None
    except LocalEntryNotFoundError as error:
        cause = error.__cause__ or error.__context__
        offline = constants.HF_HUB_OFFLINE or "HF_HUB_OFFLINE" in str(error)
        reason = "HF_HUB_OFFLINE is set" if offline else f"the Hub at {constants.ENDPOINT} cannot be reached ({cause})"
        raise FileNotFoundError(
            f"cannot read {hub.url}: {reason}, and revision {revision!r} of it is not in the local Hub cache "
            f"({constants.HF_HUB_CACHE}). Read it once with the Hub reachable (then it is read from the cache, "
            "offline too), or download the folder yourself and set data.path to it"
        ) from None
    except HfHubHTTPError as error:
        raise FileNotFoundError(
            f"the Hub refused to send {hub.url} ({error.response.status_code}: {error.server_message or error}); "
            "check the token in HF_TOKEN (or `hf auth login`) and the id in data.path"
        ) from None


def _listing(hub: HubDataPath, commit: str) -> str:
    """What the repository holds at ``commit``, for an error message (a look-up made only when loading failed)."""
    try:
        files = HfApi().list_repo_files(hub.repo_id, repo_type="dataset", revision=commit)
    except (HfHubHTTPError, OSError, ValueError):
        return f"commit {commit[:12]}"
    shown = ", ".join(sorted(files)[:10]) or "no files"
    return f"commit {commit[:12]} holds {shown}" + (", ..." if len(files) > 10 else "")
