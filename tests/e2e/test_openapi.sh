#!/usr/bin/env bash
# docs/openapi.yaml against the server, without starting one: the document parses as OpenAPI
# 3.1; it lists exactly the (method, path) pairs of the route table (`diary-ingest --routes`);
# each route's request body, query and path parameters are the JSON Schema of the validation
# rules (`diary-ingest --schemas`, from schema/api.yaml); authentication, write and read
# headers are documented where they apply; every error response is problem+json; every $ref
# resolves. Needs python3 with PyYAML (Debian: python3-yaml); python3-jsonschema, when
# present, also checks every schema against the JSON Schema meta-schema.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/e2e/lib.sh"
BIN_DIR=${BIN_DIR:-$top/build/bin}

tmp=$(mktemp -d /tmp/diary-openapi.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

"$BIN_DIR/diary-ingest" --routes >"$tmp/routes.tsv" 2>"$tmp/err" || bail "diary-ingest --routes: $(cat "$tmp/err")"
"$BIN_DIR/diary-ingest" --schemas >"$tmp/schemas.json" 2>"$tmp/err" || bail "diary-ingest --schemas: $(cat "$tmp/err")"
check "the route table is not empty" test -s "$tmp/routes.tsv"
python3 -c 'import yaml' 2>/dev/null || bail "python3 lacks PyYAML (Debian package python3-yaml)"

while IFS= read -r line; do
  case $line in
    "ok - "*) ok "${line#ok - }" ;;
    "not ok - "*) notok "${line#not ok - }" ;;
    *) echo "$line" ;;
  esac
done < <(python3 - "$top/docs/openapi.yaml" "$tmp/routes.tsv" "$tmp/schemas.json" <<'EOF' 2>&1
import json, re, sys
import yaml

doc_path, routes_path, schemas_path = sys.argv[1:4]
results = []

def check(ok, what, why=""):
    print(("ok - " if ok else "not ok - ") + what + ("" if ok or not why else ": " + why))

try:
    with open(doc_path) as f:
        doc = yaml.safe_load(f)
    check(isinstance(doc, dict), "docs/openapi.yaml parses as YAML")
except Exception as e:
    check(False, "docs/openapi.yaml parses as YAML", str(e))
    sys.exit(0)

check(str(doc.get("openapi", "")).startswith("3.1"), "the document is OpenAPI 3.1", str(doc.get("openapi")))
exported = json.load(open(schemas_path))
routes = []
for line in open(routes_path):
    method, path, auth, body, query = line.rstrip("\n").split("\t")
    routes.append((method.lower(), path, auth == "auth", None if body == "-" else body,
                   None if query == "-" else query))

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
documented = {(m, p) for p, item in doc.get("paths", {}).items() for m in item if m in METHODS}
served = {(m, p) for m, p, *_ in routes}
check(served == documented, "the document lists exactly the routes the server serves",
      "served only: %s; documented only: %s" % (sorted(served - documented), sorted(documented - served)))

def resolve(node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 10:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise KeyError(ref)
        node = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        seen += 1
    return node

bad_refs = []
def walk(node, where):
    if isinstance(node, dict):
        if "$ref" in node:
            try:
                resolve(node)
            except Exception:
                bad_refs.append("%s -> %s" % (where, node["$ref"]))
        for k, v in node.items():
            walk(v, where + "/" + str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk(v, "%s/%d" % (where, i))
walk(doc, "#")
check(not bad_refs, "every $ref resolves", "; ".join(bad_refs[:5]))

schemas = doc.get("components", {}).get("schemas", {})
for name, schema in exported.items():
    if name == "path":
        continue
    check(schemas.get(name) == schema, "components/schemas/%s is the rule set's JSON Schema" % name,
          "document: %s; rules: %s" % (json.dumps(schemas.get(name))[:300], json.dumps(schema)[:300]))

def params_of(path, method):
    item = doc["paths"][path]
    ps = [resolve(p) for p in item.get("parameters", [])] + [resolve(p) for p in item[method].get("parameters", [])]
    return ps

def problems(op_label, op):
    bad = []
    for code, resp in op.get("responses", {}).items():
        resp = resolve(resp)
        if not isinstance(resp.get("description"), str):
            bad.append("%s has no description" % code)
        if "X-Request-Id" not in (resp.get("headers") or {}):
            bad.append("%s does not document X-Request-Id" % code)
        if str(code)[0] in "45" and op_label != "get /readyz":
            content = resp.get("content", {})
            pj = content.get("application/problem+json")
            if not pj or resolve(pj.get("schema", {})) is not schemas.get("Problem"):
                bad.append("%s is not application/problem+json with the Problem schema" % code)
    return bad

for method, path, auth, body, query in routes:
    label = "%s %s" % (method.upper(), path)
    if (method, path) not in documented:
        continue
    op = doc["paths"][path][method]
    ps = params_of(path, method)
    # Body.
    rb = op.get("requestBody")
    if body:
        ref = (rb or {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
        check(rb is not None and rb.get("required") is True and ref == "#/components/schemas/" + body,
              "%s: the request body is %s" % (label, body), "found %s" % ref)
    else:
        check(rb is None, "%s: takes no request body" % label)
    # Query parameters.
    qps = {p["name"]: p for p in ps if p.get("in") == "query"}
    if query:
        props = exported[query]["properties"]
        req = set(exported[query].get("required", []))
        same = set(qps) == set(props) and all(
            qps[n].get("schema") == props[n] and bool(qps[n].get("required")) == (n in req) for n in props)
        check(same, "%s: the query parameters are the rules of %s" % (label, query),
              "document: %s" % json.dumps({n: [p.get("required"), p.get("schema")] for n, p in qps.items()})[:400])
    else:
        check(not qps, "%s: takes no query parameters" % label, "documents %s" % sorted(qps))
    # Path parameters.
    names = re.findall(r"\{([^}]+)\}", path)
    pps = {p["name"]: p for p in ps if p.get("in") == "path"}
    rules = exported["path"]["properties"]
    same = set(pps) == set(names) and all(
        pps[n].get("required") is True and pps[n].get("schema") == rules.get(n) for n in names)
    check(same, "%s: the path parameters are the path rules" % label)
    # Authentication.
    secured = op.get("security", doc.get("security")) not in (None, [])
    check(secured == auth, "%s: %s" % (label, "needs a bearer token" if auth else "needs no token"))
    # Headers where they apply.
    hnames = {p["name"].lower() for p in ps if p.get("in") == "header"}
    codes = set(str(c) for c in op.get("responses", {}))
    missing = []
    if method in ("post", "put", "patch", "delete") and path != "/v1/sessions":
        missing += [h for h in ("prefer", "x-request-id") if h not in hnames]
        if path != "/v1/diary/batch" and "idempotency-key" not in hnames:
            missing.append("idempotency-key")
        if "412" in codes and "if-match" not in hnames:
            missing.append("if-match")
        if "202" not in codes and path != "/v1/diary/batch":
            missing.append("a 202 answer")
    if method == "get" and path.startswith("/v1/") and "diary-min-position" not in hnames:
        missing.append("diary-min-position")
    if auth and "401" not in codes:
        missing.append("a 401 answer")
    check(not missing, "%s: documents %s" % (label, "its headers and answers"), "missing " + ", ".join(missing))
    bad = problems(label.lower(), op)
    check(not bad, "%s: every answer has a description, X-Request-Id, and errors are problem+json" % label,
          "; ".join(bad[:4]))

comp = doc.get("components", {})
want_params = {"Idempotency-Key", "If-Match", "Prefer", "Diary-Min-Position", "X-Request-Id"}
want_headers = {"Diary-Position", "Location", "ETag", "X-Request-Id", "Preference-Applied"}
check(want_params <= {resolve(p)["name"] for p in comp.get("parameters", {}).values()},
      "request headers documented: " + ", ".join(sorted(want_params)))
check(want_headers <= set(comp.get("headers", {})), "response headers documented: " + ", ".join(sorted(want_headers)))
bearer = comp.get("securitySchemes", {}).get("bearer", {})
check(bearer.get("type") == "http" and bearer.get("scheme") == "bearer", "Authorization: Bearer is the security scheme")
mna = resolve(comp.get("responses", {}).get("MethodNotAllowed", {}))
check("Allow" in (mna.get("headers") or {}), "405 with Allow is documented")

try:
    import jsonschema
    bad = []
    for name, s in schemas.items():
        try:
            jsonschema.Draft202012Validator.check_schema(s)
        except Exception as e:
            bad.append("%s: %s" % (name, str(e).splitlines()[0]))
    check(not bad, "every component schema is valid JSON Schema 2020-12", "; ".join(bad[:3]))
except ImportError:
    print("# python3-jsonschema not installed: meta-schema check skipped")
try:
    from openapi_spec_validator import validate
    try:
        validate(doc)
        check(True, "openapi-spec-validator accepts the document")
    except Exception as e:
        check(False, "openapi-spec-validator accepts the document", str(e).splitlines()[0])
except ImportError:
    print("# openapi-spec-validator not installed: its check skipped")
EOF
)

finish openapi
