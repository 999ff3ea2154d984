"""An in-memory HTTP server speaking the part of the Hugging Face Hub API that the real client uses.

Why it exists: the Hub round-trip tests must run offline, and no installable package provides a
Hub-compatible server that accepts uploads (see /work/shared/HUB_TESTING.md). So the tests point
``HF_ENDPOINT`` at this server and run the real, unpatched ``huggingface_hub`` and ``transformers``
code against it. It implements what huggingface_hub 2.4 calls for ``create_repo``,
``upload_folder`` / ``push_to_hub`` (regular, base64-inline uploads: the server never offers LFS
or Xet), ``ModelCard.push_to_hub``, branches and pull-request refs, ``hf_hub_download``,
``snapshot_download`` and ``from_pretrained``; it follows the client's behaviour, not the Hub's
full specification.

Only the Python standard library is used. State lives in memory and is lost when the server stops.
Every request body is read in full before answering, even for errors: the client keeps connections
alive, and an unread body would corrupt the next request on the same connection.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
REPO_ACTIONS = {"preupload", "commit", "revision", "tree", "branch", "discussions"}
INVALID_TOKEN = "Invalid credentials in Authorization header"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a file: what the Hub sends as ETag and tree ``oid`` for regular files."""
    return hashlib.sha1(b"blob %d\x00" % len(content) + content).hexdigest()


def _now() -> str:
    """A timestamp in the one format ``huggingface_hub.utils.parse_datetime`` accepts."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubError(Exception):
    """An error answer: status, message and the ``X-Error-Code`` the client maps to an exception class."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, body=None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = body


@dataclass
class Commit:
    """One commit: a full snapshot of the files (path -> bytes), as git sees a commit's tree."""

    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    date: str = field(default_factory=_now)


@dataclass
class Repo:
    """A repository: refs (branches and ``refs/pr/N``) pointing into a table of commits."""

    repo_type: str
    repo_id: str
    private: bool
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    discussions: dict[int, dict] = field(default_factory=dict)  # pull requests; number -> details
    created: str = field(default_factory=_now)

    def resolve(self, revision: str) -> Commit:
        """A branch, PR ref or full commit id -> commit; 404 ``RevisionNotFound`` otherwise."""
        oid = self.refs.get(revision, revision)
        if oid not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]

    def add_commit(self, parent: Commit | None, message: str, files: dict[str, bytes]) -> Commit:
        """Record a new commit; its id hashes the parent, message, tree and a counter, so it is unique."""
        tree = "".join(f"{path}\x00{git_blob_sha1(data)}\n" for path, data in sorted(files.items()))
        seed = f"{len(self.commits)}\n{parent.oid if parent else ''}\n{message}\n{tree}"
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent.oid if parent else None, message, files)
        self.commits[commit.oid] = commit
        return commit

    def open_pull_request(self, title: str, author: str, base: Commit) -> int:
        """A new pull request: ref ``refs/pr/N`` starting at ``base`` (the head of main)."""
        number = len(self.discussions) + 1
        self.refs[f"refs/pr/{number}"] = base.oid
        self.discussions[number] = {"title": title, "author": author, "createdAt": _now()}
        return number

    @property
    def url_path(self) -> str:
        return URL_PREFIXES[self.repo_type] + self.repo_id


class HubServer(ThreadingHTTPServer):
    """The server: one valid token for one user; repositories keyed by (type, id).

    ``requests`` logs ``(method, path, status)`` of every answer so tests can check what the
    client actually did (for example that a load into an empty cache downloaded the weights).
    """

    daemon_threads = True
    block_on_close = False  # keep-alive handler threads may wait on idle connections; do not join them

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str = "hf_test", user: str = "tester"):
        super().__init__((host, port), HubRequestHandler)
        self.token, self.user = token, user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.RLock()
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        """Serve in a daemon thread (returns at once)."""
        self._thread = threading.Thread(target=self.serve_forever, name="hub-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def repo(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        """Look a repo up; a private repo is invisible without a valid token (the Hub answers 404 too)."""
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and user is None):
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo


class HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to the matching Hub endpoint. All state changes happen under the server lock."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects; every answer sets Content-Length
    timeout = 60  # idle keep-alive connections end eventually
    server: HubServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        """Quiet: the test output should show failing assertions, not an access log."""

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        """The whole request body (Content-Length or chunked), read before anything else is decided."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        body = self._read_body()
        url = urlsplit(self.path)
        self.query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self.body = body
        # Split the raw path before unquoting: a revision such as refs%2Fpr%2F1 is one segment.
        segments = [unquote(part) for part in url.path.split("/")[1:]]
        try:
            with self.server.lock:
                self.user = self._authenticate()
                status, headers, payload = self._route(method, segments)
        except HubError as error:
            status = error.status
            headers = {"X-Error-Message": error.message, **error.headers}
            if error.code:
                headers["X-Error-Code"] = error.code
            payload = error.body if error.body is not None else {"error": error.message}
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        headers.setdefault("Content-Length", str(len(payload)))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)
        with self.server.lock:
            self.server.requests.append((method, self.path, status))

    def _authenticate(self) -> str | None:
        """The user of a valid bearer token, None without a token; a wrong token is 401 for every request."""
        header = self.headers.get("Authorization")
        if header is None:
            return None
        if header != f"Bearer {self.server.token}":
            raise HubError(401, INVALID_TOKEN)
        return self.server.user

    def _need_user(self) -> str:
        if self.user is None:
            raise HubError(401, "You must be authenticated to write to the Hub (send a token)")
        return self.user

    def _json_body(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Request body is not JSON: {error}") from None

    def _base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{self.headers.get('Host') or f'{host}:{port}'}"

    # ------------------------------------------------------------------ routing

    def _route(self, method: str, segments: list[str]) -> tuple[int, dict, object]:
        """Find the endpoint for the request; 404 for anything this server does not implement."""
        if segments[:1] == ["api"]:
            rest = segments[1:]
            if method == "POST" and rest == ["repos", "create"]:
                return self._create_repo()
            if method == "DELETE" and rest == ["repos", "delete"]:
                return self._delete_repo()
            if method == "GET" and rest == ["whoami-v2"]:
                user = self._need_user()
                return 200, {}, {"type": "user", "name": user, "fullname": user, "orgs": [], "auth": {}}
            if method == "POST" and rest == ["validate-yaml"]:
                return self._validate_yaml()
            if rest and rest[0] in REPO_TYPES and len(rest) >= 2:
                return self._repo_api(method, REPO_TYPES[rest[0]], rest[1:])
        else:
            repo_type = "model"
            if segments and segments[0] in REPO_TYPES:
                repo_type, segments = REPO_TYPES[segments[0]], segments[1:]
            for size in (2, 1):  # namespace/name first, then a bare name
                if len(segments) > size + 1 and segments[size] == "resolve" and method in ("GET", "HEAD"):
                    repo_id = "/".join(segments[:size])
                    return self._resolve(repo_type, repo_id, segments[size + 1], "/".join(segments[size + 2 :]))
        raise HubError(404, f"This test server does not implement {method} {self.path}")

    def _repo_api(self, method: str, repo_type: str, rest: list[str]) -> tuple[int, dict, object]:
        """``/api/{type}s/{repo_id}[/{action}/...]`` with a repo id of one or two segments."""
        for size in (2, 1):
            if len(rest) > size and rest[size] in REPO_ACTIONS:
                repo_id, action, args = "/".join(rest[:size]), rest[size], rest[size + 1 :]
                break
        else:
            if method == "GET" and 1 <= len(rest) <= 2:
                return self._repo_info(repo_type, "/".join(rest), "main")
            raise HubError(404, f"This test server does not implement {method} {self.path}")
        repo = self.server.repo(repo_type, repo_id, self.user)
        if action == "revision" and method == "GET" and args:
            return self._repo_info(repo_type, repo_id, "/".join(args))
        if action == "tree" and method == "GET" and args:
            return self._tree(repo, args[0], "/".join(args[1:]))
        if action == "preupload" and method == "POST" and args:
            return self._preupload(repo, "/".join(args))
        if action == "commit" and method == "POST" and args:
            return self._commit(repo, "/".join(args))
        if action == "branch" and args:
            return self._branch(method, repo, "/".join(args))
        if action == "discussions":
            return self._discussions(method, repo, args)
        raise HubError(404, f"This test server does not implement {method} {self.path}")

    # ------------------------------------------------------------------ repositories

    def _create_repo(self) -> tuple[int, dict, object]:
        """POST /api/repos/create. An existing repo is 409 whose body still carries ``url`` (the client reads it)."""
        user = self._need_user()
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIXES or not payload.get("name"):
            raise HubError(400, f"Invalid repo type or name in {payload}")
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        url = f"{self._base()}/{URL_PREFIXES[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.server.repos:
            message = f"You already created this {repo_type} repo"
            raise HubError(409, message, body={"error": message, "url": url})
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        repo = Repo(repo_type, repo_id, private)
        repo.refs["main"] = repo.add_commit(None, "initial commit", {".gitattributes": GITATTRIBUTES}).oid
        self.server.repos[(repo_type, repo_id)] = repo
        return 200, {}, {"url": url, "name": repo_id, "id": repo_id}

    def _delete_repo(self) -> tuple[int, dict, object]:
        user = self._need_user()
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or user}/{payload.get('name')}"
        self.server.repo(repo_type, repo_id, user)
        del self.server.repos[(repo_type, repo_id)]
        return 200, {}, b""

    def _validate_yaml(self) -> tuple[int, dict, object]:
        """POST /api/validate-yaml, called before a README.md is committed: checks the front matter is closed."""
        content = self._json_body().get("content", "")
        lines = content.splitlines()
        if lines[:1] == ["---"] and "---" not in lines[1:]:
            error = "The YAML metadata block opened by '---' is never closed"
            return 400, {}, {"errors": [{"message": error}], "warnings": []}
        return 200, {}, {"errors": [], "warnings": []}

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> tuple[int, dict, object]:
        """GET /api/{type}s/{repo}[/revision/{rev}]: ``sha`` and ``siblings`` are what snapshot_download needs."""
        repo = self.server.repo(repo_type, repo_id, self.user)
        commit = repo.resolve(revision)
        siblings = [
            {"rfilename": path, "size": len(data), "blobId": git_blob_sha1(data)}
            for path, data in sorted(commit.files.items())
        ]
        info = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        return 200, {}, info

    def _tree(self, repo: Repo, revision: str, folder: str) -> tuple[int, dict, object]:
        """GET /api/{type}s/{repo}/tree/{rev}[/{folder}][?recursive=true]: files and folders under ``folder``.

        A folder that does not exist is 404 ``EntryNotFound`` (``AutoTokenizer`` lists
        ``additional_chat_templates`` and expects exactly that).
        """
        commit = repo.resolve(revision)
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        below = {path[len(prefix) :]: data for path, data in commit.files.items() if path.startswith(prefix)}
        if prefix and not below:
            raise HubError(404, f"{folder} does not exist on {revision}", "EntryNotFound")
        entries: dict[str, dict] = {}
        for relative, data in sorted(below.items()):
            parts = relative.split("/")
            folders = range(1, len(parts)) if recursive else range(1, min(2, len(parts)))
            for depth in folders:
                path = prefix + "/".join(parts[:depth])
                oid = hashlib.sha1(f"tree {commit.oid} {path}".encode()).hexdigest()
                entries.setdefault(path, {"type": "directory", "oid": oid, "size": 0, "path": path})
            if recursive or len(parts) == 1:
                path = prefix + relative
                entries[path] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
        return 200, {}, list(entries.values())

    def _branch(self, method: str, repo: Repo, name: str) -> tuple[int, dict, object]:
        """POST creates a branch from ``startingPoint`` (default: main's head); DELETE removes it."""
        self._need_user()
        if method == "POST":
            if name in repo.refs:
                raise HubError(409, f"Branch {name} already exists")
            start = self._json_body().get("startingPoint") or "main"
            repo.refs[name] = repo.resolve(start).oid
            return 200, {}, {}
        if method == "DELETE":
            if name not in repo.refs or name == "main":
                raise HubError(404, f"Branch {name} cannot be deleted", "RevisionNotFound")
            del repo.refs[name]
            return 200, {}, {}
        raise HubError(405, f"{method} is not allowed on a branch")

    def _discussions(self, method: str, repo: Repo, args: list[str]) -> tuple[int, dict, object]:
        """Pull requests only: POST opens one (``upload_folder(create_pr=True)`` does), GET reads it back."""
        if method == "POST" and not args:
            payload = self._json_body()
            if not payload.get("pullRequest"):
                raise HubError(400, "This test server supports pull requests, not plain discussions")
            number = repo.open_pull_request(payload.get("title", ""), self._need_user(), repo.resolve("main"))
            return (
                200,
                {},
                {"num": number, "pullRequest": True, "url": f"{self._base()}/{repo.url_path}/discussions/{number}"},
            )
        if method == "GET" and len(args) == 1 and args[0].isdigit() and int(args[0]) in repo.discussions:
            number, details = int(args[0]), repo.discussions[int(args[0])]
            return (
                200,
                {},
                {
                    "num": number,
                    "title": details["title"],
                    "author": {"name": details["author"]},
                    "createdAt": details["createdAt"],
                    "status": "open",
                    "repo": {"name": repo.repo_id, "type": repo.repo_type},
                    "isPullRequest": True,
                    "events": [],
                    "changes": {"base": "refs/heads/main"},
                    "filesWithConflicts": [],
                    "diff": "",
                },
            )
        raise HubError(404, f"Discussion not found: {'/'.join(args)}")

    # ------------------------------------------------------------------ uploads

    def _preupload(self, repo: Repo, revision: str) -> tuple[int, dict, object]:
        """POST preupload: every file is "regular" (inline base64 in the commit), never LFS or Xet.

        ``oid`` is the blob id of the file already at that path, so the client can skip unchanged files.
        """
        self._need_user()
        commit = repo.resolve(revision)  # with ?create_pr=1 this is the PR's base branch
        files = []
        for item in self._json_body().get("files", []):
            existing = commit.files.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(existing) if existing is not None else None,
                }
            )
        return 200, {}, {"files": files, "commitOid": commit.oid}

    def _commit(self, repo: Repo, revision: str) -> tuple[int, dict, object]:
        """POST commit: an ndjson body (header line, then one line per file / deletion).

        With ``?create_pr=1`` the commit goes to a new ``refs/pr/N`` ref started from ``revision``.
        A ``parentCommit`` that is not the head is 412, as on the Hub.
        """
        self._need_user()
        parent = repo.resolve(revision)
        if revision not in repo.refs:
            raise HubError(400, f"Commits go to a branch or a refs/pr/N ref, not to {revision}")
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "A commit body starts with a header line")
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, parent.oid):
            raise HubError(412, f"parentCommit {header['parentCommit']} is not the head of {revision}")
        files = dict(parent.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if not path or path.startswith("/") or ".." in path.split("/"):
                raise HubError(400, f"Invalid path in commit: {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "This test server takes base64-encoded files only")
                files[path] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                files = {name: data for name, data in files.items() if not name.startswith(prefix)}
            else:
                raise HubError(400, f"This test server does not support {key!r} operations (no LFS / Xet)")
        message = header.get("summary", "") + ("\n\n" + header["description"] if header.get("description") else "")
        commit = repo.add_commit(parent, message, files)
        pull_request_url = None
        if self.query.get("create_pr") == "1":
            number = repo.open_pull_request(header.get("summary", ""), self.user, parent)
            repo.refs[f"refs/pr/{number}"] = commit.oid
            pull_request_url = f"{self._base()}/{repo.url_path}/discussions/{number}"
        else:
            repo.refs[revision] = commit.oid
        return (
            200,
            {},
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._base()}/{repo.url_path}/commit/{commit.oid}",
                "pullRequestUrl": pull_request_url,
                "hookOutput": "",
            },
        )

    # ------------------------------------------------------------------ downloads

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> tuple[int, dict, object]:
        """HEAD / GET ``/{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` and Range."""
        repo = self.server.repo(repo_type, repo_id, self.user)
        commit = repo.resolve(revision)
        headers = {"X-Repo-Commit": commit.oid}
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers=headers)
        data = commit.files[path]
        headers.update(
            {
                "ETag": f'"{git_blob_sha1(data)}"',
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
            }
        )
        byte_range = self.headers.get("Range")
        if not byte_range:
            return 200, headers, data
        start, end = self._parse_range(byte_range, len(data))
        if start is None:
            headers["Content-Range"] = f"bytes */{len(data)}"
            raise HubError(416, f"Range {byte_range} is not satisfiable for {len(data)} bytes", headers=headers)
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return 206, headers, data[start : end + 1]

    @staticmethod
    def _parse_range(value: str, size: int) -> tuple[int | None, int | None]:
        """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range -> inclusive (start, end), or (None, None)."""
        unit, _, spec = value.partition("=")
        first, _, last = spec.split(",")[0].strip().partition("-")
        try:
            if unit.strip() != "bytes":
                return None, None
            if first == "":  # suffix: the last n bytes
                start, end = max(size - int(last), 0), size - 1
            else:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
        except ValueError:
            return None, None
        if start >= size or start > end:
            return None, None
        return start, end
