"""Checks the deployment files with maintained checkers, for tests/deploy.rs:
the Kubernetes manifests with kubernetes-validate (strict, against the
Kubernetes release given), the Nomad job parsed by python-hcl2 and checked
against nomad-job.schema.json with jsonschema. Prints, as JSON, the node
configs embedded in them (for the node itself to load) or exits 1 with the
checkers' errors.

    python check.py DEPLOY_DIR KUBERNETES_VERSION"""

import json
import pathlib
import subprocess
import sys

import hcl2
import jsonschema
import yaml
from hcl2 import SerializationOptions


def main() -> int:
    deploy, version = pathlib.Path(sys.argv[1]), sys.argv[2]
    here = pathlib.Path(__file__).resolve().parent
    configs = {}

    manifests = sorted((deploy / "kubernetes").glob("*.yaml"))
    validator = pathlib.Path(sys.executable).parent / "kubernetes-validate"
    checked = subprocess.run(
        [str(validator), "--strict", "--quiet", "-k", version, *map(str, manifests)],
        capture_output=True, text=True,
    )
    if checked.returncode != 0 or not manifests:
        print(checked.stdout + checked.stderr or "no manifests", file=sys.stderr)
        return 1
    for manifest in manifests:
        for doc in yaml.safe_load_all(manifest.read_text()):
            if doc and doc["kind"] == "ConfigMap" and "wasmnode.toml" in doc["data"]:
                configs[f"kubernetes:{manifest.name}"] = doc["data"]["wasmnode.toml"]

    options = SerializationOptions(
        strip_string_quotes=True, preserve_heredocs=False,
        explicit_blocks=False, with_comments=False,
    )
    schema = json.loads((here / "nomad-job.schema.json").read_text())
    for job_file in sorted((deploy / "nomad").glob("*.nomad.hcl")):
        with job_file.open() as f:
            job = hcl2.load(f, serialization_options=options)
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(job))
        if errors:
            for e in errors:
                print(f"{job_file}: {list(e.absolute_path)}: {e.message}", file=sys.stderr)
            return 1
        for name, spec in job["job"][0].items():
            for group in spec["group"]:
                for tasks in group.values():
                    for task in tasks["task"]:
                        for body in task.values():
                            for t in body.get("template", []):
                                if t["destination"].endswith(".toml"):
                                    data = t["data"].replace('\\"', '"')
                                    configs[f"nomad:{job_file.name}"] = data
    print(json.dumps(configs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
