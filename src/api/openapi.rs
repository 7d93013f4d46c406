//! The API's OpenAPI 3.1 document, built here and served at
//! `GET /api/openapi.json` (a copy is kept in the repository as
//! `api/openapi.json`; a test keeps both equal, and equal to the router).
//!
//! Every operation has typed request and response schemas, with the name
//! patterns and limits the server enforces, so that a client generated from
//! it, or a fuzzer such as Schemathesis, sends only what the server
//! accepts. Every status an operation can answer is listed; each error body
//! is the one `Error` schema. Limits the server counts in bytes (a value's
//! 64 KiB, a description's 1 KiB) are given in characters at a quarter of
//! that, so that any string the schema allows fits.

use serde_json::{json, Map, Value};

/// A vault's name.
const VAULT_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";
/// A secret's or var's name.
const SECRET_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_.-]{0,127}$";
/// An environment variable's name.
const ENV_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// A grant: `NAME` (a name that is also a variable name) or `ENV=NAME`.
const GRANT_PATTERN: &str =
    "^([A-Za-z_][A-Za-z0-9_]{0,127}|[A-Za-z_][A-Za-z0-9_]*=[A-Za-z_][A-Za-z0-9_.-]{0,127})$";
/// A deployment's slug.
const SLUG_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";
/// A template's name.
const TEMPLATE_PATTERN: &str = "^[a-z0-9_-][a-z0-9._-]{0,62}$";
/// Text without a NUL character.
const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";
/// What a header value may hold: printable ASCII and tabs.
const HEADER_VALUE_PATTERN: &str = "^[\\t\\u0020-\\u007e]*$";
/// A Unix socket of `<home>/sockets/`, or a host and port.
const SOCKET_PATTERN: &str = "^(unix:[a-z0-9][a-z0-9-]{0,62}|[^:]+:[0-9]{1,5})$";

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// What one operation is: the parts [`operation`] assembles.
struct Op {
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: &'static str,
    /// False for the routes anyone may call (health, this document).
    secured: bool,
    parameters: Vec<Value>,
    body: Option<Value>,
    /// The body is raw bytes (a file), not JSON.
    raw_body: bool,
    /// The successful answers: status → (description, content).
    ok: Vec<(&'static str, &'static str, Value)>,
    /// Error statuses beyond the ones every operation of its kind has.
    errors: &'static [&'static str],
}

/// What an error status means, for its description.
fn error_meaning(status: &str) -> &'static str {
    match status {
        "400" => "Bad request: a name, rule or reference is wrong (nothing changed)",
        "401" => {
            "Unknown or revoked token, or an Authorization header that is not `Bearer <token>`"
        }
        "403" => "No Authorization header, or a vault beyond the token's grant",
        "404" => "Not found (or not the caller's)",
        "409" => "Conflict: this server cannot do it (another node or supervisor holds it)",
        "413" => "Body larger than 1 MiB",
        "415" => "Body without `Content-Type: application/json`",
        "422" => "A field of the body has the wrong type or is missing; `error` names its path",
        "429" => "Too many runs at once; try again when one ends",
        "500" => "Internal error (details are in the server's log)",
        "502" => "The fetched server could not be reached or answered badly",
        "503" => {
            "The store is unavailable, or the server is shutting down; retry after `Retry-After`"
        }
        "504" => "The fetched server did not answer in time",
        _ => "Error",
    }
}

fn operation(op: Op) -> Value {
    let mut responses = Map::new();
    for (status, description, content) in op.ok {
        let mut response = json!({ "description": description });
        if !content.is_null() {
            response["content"] = content;
        }
        responses.insert(status.to_owned(), response);
    }
    let mut errors: Vec<&str> = vec!["500"];
    if op.secured {
        errors.extend(["400", "401", "403", "503"]);
    }
    if op.body.is_some() {
        errors.extend(["400", "413", "415", "422"]);
    }
    if op.raw_body {
        errors.extend(["400", "413"]);
    }
    if !op.parameters.is_empty() {
        errors.push("400");
    }
    errors.extend(op.errors);
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        responses.insert(
            status.to_owned(),
            json!({
                "description": error_meaning(status),
                "content": json_content(schema_ref("Error")),
            }),
        );
    }
    let mut value = json!({
        "operationId": op.id,
        "tags": [op.tag],
        "summary": op.summary,
        "description": op.description,
        "security": if op.secured { json!([{ "bearer": [] }]) } else { json!([]) },
        "responses": responses,
    });
    if !op.parameters.is_empty() {
        value["parameters"] = Value::Array(op.parameters);
    }
    if let Some(schema) = op.body {
        value["requestBody"] = json!({ "required": true, "content": json_content(schema) });
    }
    if op.raw_body {
        value["requestBody"] = json!({
            "required": true,
            "content": { "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } },
        });
    }
    value
}

fn path_param(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
}

fn query_param(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn vault_param() -> Value {
    path_param(
        "vault",
        schema_ref("VaultName"),
        "The vault (also called an environment)",
    )
}

fn ok_json(description: &'static str, schema: Value) -> (&'static str, &'static str, Value) {
    ("200", description, json_content(schema))
}

/// JSON lines: one object per line, as they happen.
fn ok_lines(description: &'static str) -> (&'static str, &'static str, Value) {
    (
        "200",
        description,
        json!({ "application/x-ndjson": { "schema": { "type": "string", "description": "One JSON object per line: `{\"ts\", \"stream\", \"data\"}` output lines, then an `{\"event\": \"exit\", ...}` line" } } }),
    )
}

fn file_path_param() -> Value {
    json!({
        "name": "path", "in": "query", "required": true,
        "description": "Relative to the working directory (`.` for itself); no `..`, no absolute path",
        "schema": { "type": "string", "pattern": "^[^/\\u0000]([^\\u0000]*)?$" },
    })
}

fn process_param() -> Value {
    path_param(
        "pid",
        json!({ "type": "integer", "minimum": 1, "maximum": 9_007_199_254_740_991_u64 }),
        "The background command's id",
    )
}

fn follow_params() -> Vec<Value> {
    vec![
        query_param(
            "follow",
            json!({ "type": "boolean" }),
            "Keep the answer open and send new lines as they come",
        ),
        query_param(
            "tail",
            json!({ "type": "integer", "minimum": 0, "maximum": 1_000_000 }),
            "Only the last N lines written so far",
        ),
    ]
}

/// Every operation, as (path, method, operation).
fn operations() -> Vec<(&'static str, &'static str, Value)> {
    let name_param = path_param("name", schema_ref("SecretName"), "The secret");
    let sandbox_param = path_param(
        "id",
        json!({ "type": "string", "format": "uuid" }),
        "The sandbox's id",
    );
    let slug_param = path_param("slug", schema_ref("Slug"), "The deployment's slug");
    let run_param = path_param(
        "id",
        json!({ "type": "string", "format": "uuid" }),
        "The run's id",
    );
    vec![
        ("/api/health", "get", operation(Op {
            id: "health", tag: "server", summary: "Is the server up, and can it reach its store",
            description: "No token needed. 503 (with the same body, `status: unavailable`) when the store does not answer.",
            secured: false, parameters: vec![], body: None, raw_body: false,
            ok: vec![ok_json("Up", schema_ref("Health"))],
            errors: &["503"],
        })),
        ("/api/openapi.json", "get", operation(Op {
            id: "openapi", tag: "server", summary: "This document",
            description: "No token needed.", secured: false, parameters: vec![], body: None, raw_body: false,
            ok: vec![ok_json("The OpenAPI 3.1 document", json!({ "type": "object" }))],
            errors: &[],
        })),
        ("/api/vaults/secrets", "post", operation(Op {
            id: "setSecrets", tag: "secrets", summary: "Set several secrets (not atomic)",
            description: "Grant: write on `vault_name`. Each secret gets a new version. 400 when any failed: the others are set, and the body also carries `set_secrets` and `versions`; its `error` is `The following secrets could not be set:` then one `  NAME: reason` line per failure.",
            secured: true, parameters: vec![], body: Some(schema_ref("SetSecretsRequest")), raw_body: false,
            ok: vec![ok_json("All set", schema_ref("SetSecretsResult"))],
            errors: &[],
        })),
        ("/api/vaults/vars", "post", operation(Op {
            id: "setVar", tag: "vars", summary: "Set a var (a value that is not secret)",
            description: "Grant: write on `vault_name`.", secured: true, parameters: vec![],
            body: Some(schema_ref("SetVarRequest")), raw_body: false,
            ok: vec![ok_json("Set", json!({ "type": "object", "additionalProperties": false }))],
            errors: &[],
        })),
        ("/api/vaults/{vault}/secrets", "get", operation(Op {
            id: "listSecrets", tag: "secrets", summary: "The vault's secrets: metadata, never values",
            description: "Grant: read on the vault.", secured: true, parameters: vec![vault_param()], body: None, raw_body: false,
            ok: vec![ok_json("Sorted by name", json!({
                "type": "object", "required": ["secrets"],
                "properties": { "secrets": { "type": "array", "items": schema_ref("SecretMeta") } },
            }))],
            errors: &[],
        })),
        ("/api/vaults/{vault}/secrets/{name}", "get", operation(Op {
            id: "getSecretMetadata", tag: "secrets", summary: "One secret's metadata (never its value)",
            description: "Grant: read on the vault. `HEAD` answers the same status with no body (an exists check).",
            secured: true, parameters: vec![vault_param(), name_param.clone()], body: None, raw_body: false,
            ok: vec![ok_json("Its metadata", schema_ref("SecretMeta"))],
            errors: &["404"],
        })),
        ("/api/vaults/{vault}/secrets/{name}", "head", operation(Op {
            id: "secretExists", tag: "secrets", summary: "Does the secret exist (200) or not (404)",
            description: "Grant: read on the vault. No body.",
            secured: true, parameters: vec![vault_param(), name_param.clone()], body: None, raw_body: false,
            ok: vec![("200", "It exists", Value::Null)],
            errors: &["404"],
        })),
        ("/api/vaults/{vault}/secrets/{name}", "delete", operation(Op {
            id: "deleteSecret", tag: "secrets", summary: "Delete a secret and its versions",
            description: "Grant: write on the vault.", secured: true,
            parameters: vec![vault_param(), name_param], body: None, raw_body: false,
            ok: vec![ok_json("Deleted", schema_ref("Deleted"))],
            errors: &["404"],
        })),
        ("/api/vaults/{vault}/rendered", "get", operation(Op {
            id: "renderVault", tag: "secrets", summary: "The vault's secrets: previews, or values with mode=Full",
            description: "Grant: read on the vault. Audited (`secret.render`) for every secret read. Without `mode`, previews only (`PreviewOnly`): values only with `mode=Full`. `environment` is an alias of the vault: when given, it is the vault rendered (and the grant is checked on it).",
            secured: true,
            parameters: vec![
                vault_param(),
                query_param("mode", json!({ "type": "string", "enum": ["Full", "PreviewOnly"], "default": "PreviewOnly" }), "Values in full, or previews"),
                query_param("secret-name-filter", json!({ "type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_.-]{0,127}(,[A-Za-z_][A-Za-z0-9_.-]{0,127})*$" }), "Only these secrets (comma-separated names); one that is not there is a 404"),
                query_param("environment", schema_ref("VaultName"), "An alias of the vault in the path"),
            ],
            body: None, raw_body: false,
            ok: vec![ok_json("The secrets", schema_ref("Rendered"))],
            errors: &["404"],
        })),
        ("/api/secrets/set", "post", operation(Op {
            id: "scopedSet", tag: "references", summary: "Store a secret in a scope and get a reference to it",
            description: "Scope `workspace` (grant: write on vault `workspace`) or `user` (the token's own `user.<name>` vault; `user_required` without a user). `value` may be any JSON value: a string is stored as it is, anything else as its compact JSON text.",
            secured: true, parameters: vec![], body: Some(schema_ref("ScopedSetRequest")), raw_body: false,
            ok: vec![ok_json("Stored", schema_ref("Reference"))],
            errors: &[],
        })),
        ("/api/secrets/get", "post", operation(Op {
            id: "scopedGet", tag: "references", summary: "A reference to a scoped secret (never its value)",
            description: "`{\"error\": \"not_found\"}` (404) when it does not exist.",
            secured: true, parameters: vec![], body: Some(schema_ref("ScopedGetRequest")), raw_body: false,
            ok: vec![ok_json("A reference", schema_ref("Reference"))],
            errors: &["404"],
        })),
        ("/api/secrets/delete", "post", operation(Op {
            id: "scopedDelete", tag: "references", summary: "Delete a scoped secret",
            description: "`{\"error\": \"not_found\"}` (404) when it does not exist.",
            secured: true, parameters: vec![], body: Some(schema_ref("ScopedDeleteRequest")), raw_body: false,
            ok: vec![ok_json("Deleted", schema_ref("Deleted"))],
            errors: &["404"],
        })),
        ("/api/fetch", "post", operation(Op {
            id: "fetch", tag: "fetch", summary: "Send an HTTP request with `$secret:` references resolved",
            description: "References in the url's path and query, the headers, the body and `auth` are resolved just before sending; the answer comes back with every resolved value masked. Loopback, private, link-local, unspecified and multicast destinations are refused (403) unless `serve --fetch-allow` opened them. `awsv4` signs the request with AWS Signature Version 4.",
            secured: true, parameters: vec![], body: Some(schema_ref("FetchRequest")), raw_body: false,
            ok: vec![ok_json("The response, masked", schema_ref("FetchResponse"))],
            errors: &["502", "504"],
        })),
        ("/api/sandboxes", "post", operation(Op {
            id: "createSandbox", tag: "sandboxes", summary: "Create a sandbox of a template",
            description: "Grant: read on `vault` (default `default`). Only this token may use it afterwards.",
            secured: true, parameters: vec![], body: Some(schema_ref("CreateSandboxRequest")), raw_body: false,
            ok: vec![ok_json("Created", schema_ref("Sandbox"))],
            errors: &["404"],
        })),
        ("/api/sandboxes", "get", operation(Op {
            id: "listSandboxes", tag: "sandboxes", summary: "The caller's sandboxes, oldest first",
            description: "", secured: true, parameters: vec![], body: None, raw_body: false,
            ok: vec![ok_json("Its sandboxes", json!({
                "type": "object", "required": ["sandboxes"],
                "properties": { "sandboxes": { "type": "array", "items": schema_ref("SandboxListing") } },
            }))],
            errors: &[],
        })),
        ("/api/sandboxes/{id}", "delete", operation(Op {
            id: "deleteSandbox", tag: "sandboxes", summary: "Delete a sandbox and its files",
            description: "Only its creator (others get 404).", secured: true,
            parameters: vec![sandbox_param.clone()], body: None, raw_body: false,
            ok: vec![ok_json("Deleted", json!({
                "type": "object", "required": ["id", "deleted"],
                "properties": { "id": { "type": "string" }, "deleted": { "const": true } },
            }))],
            errors: &["404", "409"],
        })),
        ("/api/sandboxes/{id}/exec", "post", operation(Op {
            id: "execInSandbox", tag: "sandboxes", summary: "Run a command in a sandbox",
            description: "Only its creator (others get 404). The output is masked. Buffered: one JSON result. With `stream: true`: JSON lines as they happen (`application/x-ndjson`), the last one `{\"event\": \"exit\", ...}` with the result's own field names (and `code`). The command is killed when the client goes away.",
            secured: true, parameters: vec![sandbox_param.clone()], body: Some(schema_ref("ExecRequest")), raw_body: false,
            ok: vec![("200", "The result, JSON lines with `stream: true`, or `{\"process_id\"}` with `background: true`", json!({
                "application/json": { "schema": { "anyOf": [
                    schema_ref("ExecResult"),
                    { "type": "object", "required": ["process_id"], "properties": { "process_id": { "type": "integer" } } },
                ] } },
                "application/x-ndjson": { "schema": { "type": "string" } },
            }))],
            errors: &["404", "409", "429"],
        })),
        ("/api/sandboxes/{id}", "get", operation(Op {
            id: "getSandbox", tag: "sandboxes", summary: "A sandbox: its listing, timeout and expiry",
            description: "Only its creator (others get 404).", secured: true,
            parameters: vec![sandbox_param.clone()], body: None, raw_body: false,
            ok: vec![ok_json("The sandbox", schema_ref("SandboxView"))],
            errors: &["404"],
        })),
        ("/api/sandboxes/{id}/timeout", "post", operation(Op {
            id: "setSandboxTimeout", tag: "sandboxes", summary: "A new lifetime, counted from now",
            description: "Only its creator. The sandbox is deleted that long after its last exec or file call.",
            secured: true, parameters: vec![sandbox_param.clone()], body: Some(schema_ref("TimeoutRequest")), raw_body: false,
            ok: vec![ok_json("The sandbox", schema_ref("SandboxView"))],
            errors: &["404"],
        })),
        ("/api/sandboxes/{id}/files", "put", operation(Op {
            id: "writeSandboxFile", tag: "sandbox files", summary: "Write a file (the raw body), its folders made",
            description: "Only its creator. Atomic (a reader sees the old file or the new one), given to the sandbox's uid, bounded by the template's `disk_mb` (413). A path that leaves the working directory (`..`, absolute, a link out) is a 400.",
            secured: true, parameters: vec![sandbox_param.clone(), file_path_param()], body: None, raw_body: true,
            ok: vec![ok_json("Written", json!({
                "type": "object", "required": ["path", "size"],
                "properties": { "path": { "type": "string" }, "size": { "type": "integer", "minimum": 0 } },
            }))],
            errors: &["404"],
        })),
        ("/api/sandboxes/{id}/files", "get", operation(Op {
            id: "readSandboxFile", tag: "sandbox files", summary: "Read a file (masked), or list a folder with list=true",
            description: "Only its creator. The bytes come back masked with every secret ever granted to the sandbox (and their encodings): a binary file holding none comes back byte for byte.",
            secured: true,
            parameters: vec![
                sandbox_param.clone(),
                file_path_param(),
                query_param("list", json!({ "type": "boolean" }), "List the folder `path` instead"),
            ],
            body: None, raw_body: false,
            ok: vec![("200", "The file's bytes, or the folder's entries", json!({
                "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } },
                "application/json": { "schema": schema_ref("FileListing") },
            }))],
            errors: &["404"],
        })),
        ("/api/sandboxes/{id}/files", "delete", operation(Op {
            id: "removeSandboxFile", tag: "sandbox files", summary: "Remove a file, a link, or a folder with everything in it",
            description: "Only its creator. A link is removed, never what it points to.",
            secured: true, parameters: vec![sandbox_param.clone(), file_path_param()], body: None, raw_body: false,
            ok: vec![ok_json("Removed", json!({
                "type": "object", "required": ["path", "deleted"],
                "properties": { "path": { "type": "string" }, "deleted": { "const": true } },
            }))],
            errors: &["404"],
        })),
        ("/api/sandboxes/{id}/processes", "get", operation(Op {
            id: "listBackgroundCommands", tag: "sandboxes", summary: "The sandbox's background commands",
            description: "Only its creator.", secured: true,
            parameters: vec![sandbox_param.clone()], body: None, raw_body: false,
            ok: vec![ok_json("Oldest first", json!({
                "type": "object", "required": ["processes"],
                "properties": { "processes": { "type": "array", "items": schema_ref("BackgroundCommand") } },
            }))],
            errors: &["404", "409"],
        })),
        ("/api/sandboxes/{id}/processes/{pid}", "delete", operation(Op {
            id: "stopBackgroundCommand", tag: "sandboxes", summary: "Stop a background command (SIGTERM, SIGKILL after 10 s)",
            description: "Only its creator.", secured: true,
            parameters: vec![sandbox_param.clone(), process_param()], body: None, raw_body: false,
            ok: vec![ok_json("Asked to stop", json!({
                "type": "object", "required": ["process_id", "stopped"],
                "properties": { "process_id": { "type": "integer" }, "stopped": { "const": true } },
            }))],
            errors: &["404", "409"],
        })),
        ("/api/sandboxes/{id}/processes/{pid}/log", "get", operation(Op {
            id: "backgroundCommandLog", tag: "sandboxes", summary: "A background command's masked output, as JSON lines",
            description: "Only its creator. The last line is its exit event once it ended; with `follow=true` the answer stays open until then.",
            secured: true,
            parameters: [vec![sandbox_param.clone(), process_param()], follow_params()].concat(), body: None, raw_body: false,
            ok: vec![ok_lines("The log's lines")],
            errors: &["404", "409"],
        })),
        ("/api/deployments", "post", operation(Op {
            id: "createDeployment", tag: "deployments", summary: "Create (and start) a deployment",
            description: "Grant: read on `vault` (default `default`). 409 when this server is not the home's supervisor.",
            secured: true, parameters: vec![], body: Some(schema_ref("CreateDeploymentRequest")), raw_body: false,
            ok: vec![ok_json("Created", json!({
                "type": "object", "required": ["slug"], "properties": { "slug": schema_ref("Slug") },
            }))],
            errors: &["404", "409"],
        })),
        ("/api/deployments", "get", operation(Op {
            id: "listDeployments", tag: "deployments", summary: "The deployments of the vaults the caller can read",
            description: "", secured: true, parameters: vec![], body: None, raw_body: false,
            ok: vec![ok_json("Each with its state, instances, restarts and secret versions", json!({
                "type": "object", "required": ["deployments"],
                "properties": { "deployments": { "type": "array", "items": schema_ref("Deployment") } },
            }))],
            errors: &["409"],
        })),
        ("/api/deployments/{slug}", "delete", operation(Op {
            id: "deleteDeployment", tag: "deployments", summary: "Stop and delete a deployment",
            description: "Grant: write on its vault.", secured: true,
            parameters: vec![slug_param.clone()], body: None, raw_body: false,
            ok: vec![ok_json("Deleted", json!({
                "type": "object", "required": ["slug", "deleted"],
                "properties": { "slug": schema_ref("Slug"), "deleted": { "const": true } },
            }))],
            errors: &["404", "409"],
        })),
        ("/api/deployments/{slug}/logs", "get", operation(Op {
            id: "deploymentLogs", tag: "deployments", summary: "A deployment's masked log, as JSON lines",
            description: "Grant: write on its vault.", secured: true,
            parameters: [vec![slug_param.clone()], follow_params()].concat(), body: None, raw_body: false,
            ok: vec![ok_lines("The log's lines")],
            errors: &["404", "409"],
        })),
        ("/api/deployments/{slug}/{verb}", "post", operation(Op {
            id: "controlDeployment", tag: "deployments", summary: "Stop, start or restart a deployment",
            description: "Grant: write on its vault. A restart rolls one instance at a time.", secured: true,
            parameters: vec![
                slug_param.clone(),
                path_param("verb", json!({ "type": "string", "enum": ["stop", "start", "restart"] }), "What to do"),
            ],
            body: None, raw_body: false,
            ok: vec![ok_json("Done", json!({
                "type": "object", "required": ["slug", "done"],
                "properties": { "slug": schema_ref("Slug"), "done": { "const": true } },
            }))],
            errors: &["404", "409"],
        })),
        ("/api/agents/{slug}/runs", "post", operation(Op {
            id: "startAgentRun", tag: "agents", summary: "Start a run of an agent deployment",
            description: "Grant: read on its vault. With `wait=true` the answer comes when the run ends, with the run's fields.",
            secured: true,
            parameters: vec![
                slug_param.clone(),
                query_param("wait", json!({ "type": "boolean" }), "Answer when the run ends"),
            ],
            body: Some(schema_ref("AgentRunRequest")), raw_body: false,
            ok: vec![ok_json("Started (or, with wait, ended)", json!({
                "anyOf": [
                    { "type": "object", "required": ["run_id"], "properties": { "run_id": { "type": "string" } } },
                    schema_ref("Run"),
                ],
            }))],
            errors: &["404", "409", "429"],
        })),
        ("/api/agents/{slug}/runs", "get", operation(Op {
            id: "listAgentRuns", tag: "agents", summary: "An agent's runs",
            description: "Grant: write on its vault.", secured: true,
            parameters: vec![slug_param], body: None, raw_body: false,
            ok: vec![ok_json("Its runs (without their logs)", json!({
                "type": "object", "required": ["runs"],
                "properties": { "runs": { "type": "array", "items": schema_ref("Run") } },
            }))],
            errors: &["404", "409"],
        })),
        ("/api/runs/{id}", "get", operation(Op {
            id: "getRun", tag: "agents", summary: "A run: status, exit code, masked log",
            description: "Grant: write on its deployment's vault.", secured: true,
            parameters: vec![run_param.clone()], body: None, raw_body: false,
            ok: vec![ok_json("The run", schema_ref("Run"))],
            errors: &["404"],
        })),
        ("/api/runs/{id}/log", "get", operation(Op {
            id: "runLog", tag: "agents", summary: "A run's masked log, as JSON lines",
            description: "Grant: write on its deployment's vault. With `follow=true` the answer ends with the run.",
            secured: true,
            parameters: [vec![run_param], follow_params()].concat(), body: None, raw_body: false,
            ok: vec![ok_lines("The log's lines")],
            errors: &["404"],
        })),
        ("/api/audit", "get", operation(Op {
            id: "audit", tag: "audit", summary: "Audit records of the vaults the caller can read",
            description: "Oldest first; `limit` keeps the newest N.", secured: true,
            parameters: vec![
                query_param("limit", json!({ "type": "integer", "minimum": 0, "maximum": 1_000_000_000 }), "The newest N records only"),
                query_param("vault", schema_ref("VaultName"), "Only this vault's (needs read there)"),
                query_param("secret", schema_ref("SecretName"), "Only this secret's"),
            ],
            body: None, raw_body: false,
            ok: vec![ok_json("The records", json!({
                "type": "object", "required": ["records"],
                "properties": { "records": { "type": "array", "items": schema_ref("AuditRecord") } },
            }))],
            errors: &[],
        })),
    ]
}

fn string_map(key_pattern: &str) -> Value {
    json!({
        "type": "object",
        "propertyNames": { "pattern": key_pattern },
        "additionalProperties": { "type": "string", "pattern": NO_NUL_PATTERN },
    })
}

fn grants() -> Value {
    json!({ "type": "array", "items": schema_ref("Grant") })
}

fn timestamp() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

fn schemas() -> Value {
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "description": "Every error body. `errors` lists the items that failed where several can; a partial bulk set also carries `set_secrets` and `versions`.",
            "properties": {
                "error": { "type": "string" },
                "errors": { "type": "array", "items": {
                    "type": "object", "required": ["name", "error"],
                    "properties": { "name": { "type": "string" }, "error": { "type": "string" } },
                } },
                "set_secrets": { "type": "array", "items": { "type": "string" } },
                "versions": { "type": "object", "additionalProperties": { "type": "integer" } },
            },
        },
        "VaultName": { "type": "string", "pattern": VAULT_PATTERN, "description": "A vault (an environment): `default`, `production`, ..." },
        "SecretName": { "type": "string", "pattern": SECRET_PATTERN },
        "EnvName": { "type": "string", "pattern": ENV_PATTERN },
        "Slug": { "type": "string", "pattern": SLUG_PATTERN },
        "Grant": { "type": "string", "pattern": GRANT_PATTERN, "description": "`NAME` (injected under its own name) or `ENV=NAME`; the secret must exist" },
        "SecretValue": { "type": "string", "minLength": 1, "maxLength": 65536, "pattern": "^[^\\u0000]+$", "description": "1 byte to 64 KiB of UTF-8, no NUL" },
        "Purpose": { "type": "string", "enum": ["APIKey", "SSHKey", "UsernamePassword", "Other"] },
        "Health": {
            "type": "object", "required": ["status", "version", "store"],
            "properties": {
                "status": { "type": "string", "enum": ["ok", "unavailable"] },
                "version": { "type": "string" },
                "store": { "type": "object", "required": ["reachable", "backend"], "properties": {
                    "reachable": { "type": "boolean" },
                    "backend": { "type": "string", "enum": ["sqlite", "postgresql"] },
                } },
            },
        },
        "SetSecretsRequest": {
            "type": "object", "additionalProperties": false, "required": ["vault_name", "secrets"],
            "properties": {
                "vault_name": schema_ref("VaultName"),
                "secrets": { "type": "array", "items": {
                    "type": "object", "additionalProperties": false, "required": ["name", "secret"],
                    "properties": {
                        "name": schema_ref("SecretName"),
                        "secret": schema_ref("SecretValue"),
                        "description": nullable(json!({ "type": "string", "maxLength": 1024 })),
                        "purpose": nullable(schema_ref("Purpose")),
                    },
                } },
            },
        },
        "SetSecretsResult": {
            "type": "object", "required": ["set_secrets", "versions"],
            "properties": {
                "set_secrets": { "type": "array", "items": { "type": "string" } },
                "versions": { "type": "object", "additionalProperties": { "type": "integer", "minimum": 1 } },
            },
        },
        "SetVarRequest": {
            "type": "object", "additionalProperties": false, "required": ["vault_name", "var"],
            "properties": {
                "vault_name": schema_ref("VaultName"),
                "var": {
                    "type": "object", "additionalProperties": false, "required": ["name", "value"],
                    "properties": {
                        "name": schema_ref("SecretName"),
                        "value": { "type": "string", "maxLength": 65536, "pattern": NO_NUL_PATTERN },
                    },
                },
            },
        },
        "SecretMeta": {
            "type": "object",
            "required": ["name", "description", "purpose", "version", "created_at", "updated_at", "expires_at"],
            "properties": {
                "name": { "type": "string" },
                "description": nullable(json!({ "type": "string" })),
                "purpose": schema_ref("Purpose"),
                "version": { "type": "integer", "minimum": 1 },
                "created_at": timestamp(),
                "updated_at": timestamp(),
                "expires_at": nullable(timestamp()),
            },
        },
        "Deleted": { "type": "object", "required": ["deleted"], "properties": { "deleted": { "const": true } } },
        "Rendered": {
            "type": "object", "required": ["vault", "mode", "secrets"],
            "properties": {
                "vault": { "type": "string" },
                "mode": { "type": "string", "enum": ["Full", "PreviewOnly"] },
                "secrets": { "type": "array", "items": {
                    "type": "object", "required": ["name", "version"],
                    "properties": {
                        "name": { "type": "string" },
                        "version": { "type": "integer" },
                        "preview": { "type": "string", "description": "PreviewOnly: at most 3 characters of a long value, then `********`" },
                        "value": { "type": "string", "description": "Full: the value" },
                        "value_base64": { "type": "string", "description": "Full: a value that is not UTF-8" },
                    },
                } },
            },
        },
        "ScopedGetRequest": {
            "type": "object", "additionalProperties": false, "required": ["name", "scope"],
            "properties": {
                "name": schema_ref("SecretName"),
                "scope": { "type": "string", "enum": ["workspace", "user"] },
                "ttl": nullable(json!({ "type": "integer", "minimum": 1, "maximum": 86_400, "description": "Seconds the reference stays valid (default 300)" })),
            },
        },
        "ScopedDeleteRequest": {
            "type": "object", "additionalProperties": false, "required": ["name", "scope"],
            "properties": {
                "name": schema_ref("SecretName"),
                "scope": { "type": "string", "enum": ["workspace", "user"] },
            },
        },
        "ScopedSetRequest": {
            "type": "object", "additionalProperties": false, "required": ["name", "scope", "value"],
            "properties": {
                "name": schema_ref("SecretName"),
                "scope": { "type": "string", "enum": ["workspace", "user"] },
                "value": {
                    "description": "Any JSON value: a string as it is, anything else as its compact JSON text (1 byte to 64 KiB, no NUL)",
                    "anyOf": [
                        schema_ref("SecretValue"),
                        { "type": "number" },
                        { "type": "boolean" },
                        { "type": "array" },
                        { "type": "object" },
                    ],
                },
                "ttl": nullable(json!({ "type": "integer", "minimum": 1, "maximum": 315_360_000, "description": "Seconds after which the secret reads as not found" })),
            },
        },
        "Reference": {
            "type": "object", "required": ["ref", "expires_at"],
            "properties": {
                "ref": { "type": "string", "pattern": "^\\$secret:[A-Za-z0-9_-]{43}$" },
                "expires_at": timestamp(),
            },
        },
        "FetchRequest": {
            "type": "object", "additionalProperties": false, "required": ["url"],
            "properties": {
                "url": { "type": "string", "pattern": "^https?://[A-Za-z][A-Za-z0-9-]*(\\.[A-Za-z][A-Za-z0-9-]*)*(:[1-9][0-9]{0,3})?([/?#][^\\u0000-\\u0020]*)?$", "description": "http or https; references allowed in the path and query (percent-encoded), not in the host" },
                "method": nullable(json!({ "type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] })),
                "headers": { "type": "object", "propertyNames": { "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" }, "additionalProperties": { "type": "string", "pattern": HEADER_VALUE_PATTERN } },
                "query": { "type": "object", "additionalProperties": { "type": "string" } },
                "body": nullable(json!({ "type": "string" })),
                "auth": nullable(schema_ref("FetchAuth")),
                "timeout_ms": nullable(json!({ "type": "integer", "minimum": 1, "maximum": 120_000 })),
            },
        },
        "FetchAuth": {
            "oneOf": [
                { "type": "object", "additionalProperties": false, "required": ["type", "token"], "properties": {
                    "type": { "const": "bearer" }, "token": { "type": "string", "pattern": HEADER_VALUE_PATTERN } } },
                { "type": "object", "additionalProperties": false, "required": ["type", "username", "password"], "properties": {
                    "type": { "const": "basic" }, "username": { "type": "string" }, "password": { "type": "string" } } },
                { "type": "object", "additionalProperties": false,
                  "required": ["type", "access_key_id", "secret_access_key", "region", "service"],
                  "description": "AWS Signature Version 4: `Authorization: AWS4-HMAC-SHA256 ...`, `x-amz-date`, `x-amz-content-sha256` and, with a session token, `x-amz-security-token`",
                  "properties": {
                    "type": { "const": "awsv4" },
                    "access_key_id": { "type": "string", "pattern": HEADER_VALUE_PATTERN },
                    "secret_access_key": { "type": "string", "pattern": HEADER_VALUE_PATTERN },
                    "session_token": nullable(json!({ "type": "string", "pattern": HEADER_VALUE_PATTERN })),
                    "region": { "type": "string", "pattern": "^[A-Za-z0-9-]+$", "description": "Such as `us-east-1` (a `$secret:` reference to one works too)" },
                    "service": { "type": "string", "pattern": "^[A-Za-z0-9-]+$", "description": "Such as `s3`, `execute-api` (a `$secret:` reference to one works too)" } } },
            ],
        },
        "FetchResponse": {
            "type": "object", "required": ["status", "headers"],
            "properties": {
                "status": { "type": "integer" },
                "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                "body": { "type": "string", "description": "The body, masked (UTF-8)" },
                "body_base64": { "type": "string", "description": "A body that is not UTF-8, masked, then base64" },
            },
        },
        "CreateSandboxRequest": {
            "type": "object", "additionalProperties": false, "required": ["template"],
            "properties": {
                "template": { "type": "string", "pattern": TEMPLATE_PATTERN, "description": "A template of `sandbox-templates/` (bash, python-3, nodejs-20, ...)" },
                "secrets": grants(),
                "env": string_map(ENV_PATTERN),
                "vault": nullable(schema_ref("VaultName")),
                "strict": { "type": "boolean", "description": "Refuse (400) when the host cannot give all the isolation asked for" },
                "timeout_s": nullable(json!({ "type": "integer", "minimum": 1, "maximum": 604_800, "description": "Deleted this long after its last exec or file call (default 3600)" })),
            },
        },
        "Sandbox": {
            "type": "object", "required": ["id", "template", "network", "limits", "isolation", "timeout_s", "expires_at"],
            "properties": {
                "timeout_s": { "type": "integer" },
                "expires_at": nullable(timestamp()),
                "id": { "type": "string" },
                "template": { "type": "string" },
                "network": { "type": "boolean" },
                "limits": { "type": "object" },
                "isolation": { "type": "array", "items": { "type": "object" }, "description": "What the template asked for, and whether the host gives it" },
            },
        },
        "SandboxView": {
            "type": "object", "required": ["id", "template", "vault", "created_at", "timeout_s", "expires_at"],
            "properties": {
                "id": { "type": "string" },
                "template": { "type": "string" },
                "vault": { "type": "string" },
                "node": { "type": "string" },
                "created_at": timestamp(),
                "last_exit": nullable(json!({ "type": "integer" })),
                "last_exec_at": nullable(timestamp()),
                "timeout_s": nullable(json!({ "type": "integer" })),
                "expires_at": nullable(timestamp()),
            },
        },
        "TimeoutRequest": {
            "type": "object", "additionalProperties": false, "required": ["timeout_s"],
            "properties": { "timeout_s": { "type": "integer", "minimum": 1, "maximum": 604_800 } },
        },
        "FileListing": {
            "type": "object", "required": ["path", "entries"],
            "properties": {
                "path": { "type": "string" },
                "entries": { "type": "array", "items": {
                    "type": "object", "required": ["name", "type", "size"],
                    "properties": {
                        "name": { "type": "string" },
                        "type": { "type": "string", "enum": ["file", "directory", "symlink", "other"] },
                        "size": { "type": "integer", "minimum": 0 },
                    },
                } },
            },
        },
        "BackgroundCommand": {
            "type": "object", "required": ["process_id", "command", "status", "exit_code", "started_at", "ended_at"],
            "properties": {
                "process_id": { "type": "integer" },
                "command": { "type": "array", "items": { "type": "string" } },
                "status": { "type": "string", "enum": ["running", "exited", "stopped"] },
                "exit_code": nullable(json!({ "type": "integer" })),
                "started_at": timestamp(),
                "ended_at": nullable(timestamp()),
            },
        },
        "SandboxListing": {
            "type": "object", "required": ["id", "template", "vault", "created_at"],
            "properties": {
                "id": { "type": "string" },
                "template": { "type": "string" },
                "vault": { "type": "string" },
                "node": { "type": "string" },
                "created_at": timestamp(),
                "last_exit": nullable(json!({ "type": "integer" })),
                "last_exec_at": nullable(timestamp()),
            },
        },
        "ExecRequest": {
            "type": "object", "additionalProperties": false, "required": ["command"],
            "properties": {
                "command": {
                    "description": "The program and its arguments, or one string run by `sh -c`",
                    "oneOf": [
                        { "type": "string", "minLength": 1, "pattern": "^[^\\u0000]+$" },
                        { "type": "array", "minItems": 1, "items": { "type": "string", "pattern": NO_NUL_PATTERN }, "prefixItems": [{ "type": "string", "minLength": 1 }] },
                    ],
                },
                "cwd": nullable(json!({ "type": "string", "pattern": NO_NUL_PATTERN, "description": "A folder of the working directory to start in (relative; no `..`; it must exist)" })),
                "secrets": grants(),
                "env": string_map(ENV_PATTERN),
                "timeout_ms": nullable(json!({ "type": "integer", "minimum": 1, "maximum": 86_400_000 })),
                "stream": { "type": "boolean" },
                "mask": nullable(json!({ "type": "string", "enum": ["label", "stars"] })),
                "stdin": nullable(json!({ "type": "string", "description": "What the command reads on stdin (default: nothing)" })),
                "background": { "type": "boolean", "description": "Answer `{\"process_id\"}` at once; the command outlives the request (excludes `stream`)" },
            },
        },
        "ExecResult": {
            "type": "object",
            "required": ["exit_code", "signal", "duration_ms", "timed_out", "output_limit_reached", "cancelled", "stdout", "stderr"],
            "properties": {
                "exit_code": { "type": "integer", "minimum": 0, "maximum": 255 },
                "signal": nullable(json!({ "type": "integer" })),
                "duration_ms": { "type": "integer", "minimum": 0 },
                "timed_out": { "type": "boolean" },
                "output_limit_reached": { "type": "boolean" },
                "cancelled": { "type": "boolean" },
                "stdout": { "type": "string" },
                "stderr": { "type": "string" },
                "stdout_base64": { "type": "string" },
                "stderr_base64": { "type": "string" },
                "unmasked_secrets": { "type": "array", "items": { "type": "string" }, "description": "Granted secrets too short to be masked" },
            },
        },
        "CreateDeploymentRequest": {
            "type": "object", "additionalProperties": false, "required": ["templateSlug", "apiSlug", "command"],
            "description": "With `notify: true`, `ready_after` is ignored.",
            "properties": {
                "templateSlug": { "type": "string", "pattern": TEMPLATE_PATTERN },
                "apiSlug": schema_ref("Slug"),
                "runtimeSlug": nullable(json!({ "type": "string", "pattern": SLUG_PATTERN, "description": "A folder of `<home>/runtimes/` copied into the working directory" })),
                "command": { "type": "array", "minItems": 1, "items": { "type": "string", "pattern": NO_NUL_PATTERN }, "prefixItems": [{ "type": "string", "minLength": 1 }] },
                "secrets": grants(),
                "mode": nullable(json!({ "type": "string", "enum": ["service", "agent"] })),
                "vault": nullable(schema_ref("VaultName")),
                "env": string_map(ENV_PATTERN),
                "replicas": nullable(json!({ "type": "integer", "minimum": 1, "maximum": 64 })),
                "sockets": { "type": "array", "maxItems": 32, "items": { "type": "string", "pattern": SOCKET_PATTERN, "description": "host:port, or unix:NAME for <home>/sockets/NAME" } },
                "notify": { "type": "boolean", "description": "Up on `READY=1` sent to `$NOTIFY_SOCKET`" },
                "ready_after": nullable(json!({ "type": "number", "minimum": 0, "maximum": 3600, "description": "Up once alive this many seconds (default 1)" })),
            },
        },
        "Deployment": {
            "type": "object", "required": ["slug", "mode", "vault", "state", "instances", "restarts"],
            "properties": {
                "slug": { "type": "string" },
                "mode": { "type": "string", "enum": ["service", "agent"] },
                "vault": { "type": "string" },
                "template": { "type": "string" },
                "command": { "type": "array", "items": { "type": "string" } },
                "secrets": { "type": "array", "items": { "type": "string" } },
                "replicas": { "type": "integer" },
                "state": { "type": "string", "enum": ["starting", "running", "backoff", "stopped"] },
                "restarts": { "type": "integer" },
                "last_exit": nullable(json!({ "type": "integer" })),
                "instances": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "pid": nullable(json!({ "type": "integer" })),
                        "state": { "type": "string", "enum": ["starting", "running", "stopping"] },
                        "started_at": timestamp(),
                        "secret_versions": { "type": "object", "additionalProperties": { "type": "integer" } },
                    },
                } },
                "secret_versions": { "type": "object", "additionalProperties": { "type": "integer" } },
            },
        },
        "AgentRunRequest": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "message": { "type": "string" },
                "params": { "type": "object" },
                "timeout_s": nullable(json!({ "type": "number", "exclusiveMinimum": 0, "maximum": 100_000_000 })),
            },
        },
        "Run": {
            "type": "object", "required": ["run_id", "slug", "status", "exit_code", "started_at", "ended_at"],
            "properties": {
                "run_id": { "type": "string" },
                "slug": { "type": "string" },
                "status": { "type": "string", "enum": ["running", "succeeded", "failed", "timed_out", "cancelled"] },
                "exit_code": nullable(json!({ "type": "integer" })),
                "started_at": timestamp(),
                "ended_at": nullable(timestamp()),
                "log": { "type": "string", "description": "The masked log (its last 1 MiB)" },
            },
        },
        "AuditRecord": {
            "type": "object", "required": ["seq", "ts", "actor", "action", "outcome"],
            "properties": {
                "seq": { "type": "integer" },
                "ts": timestamp(),
                "actor": { "type": "string" },
                "action": { "type": "string" },
                "vault": nullable(json!({ "type": "string" })),
                "secret": nullable(json!({ "type": "string" })),
                "version": nullable(json!({ "type": "integer" })),
                "outcome": { "type": "string" },
            },
        },
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (path, method, op) in operations() {
        let entry = paths
            .entry(path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "shroud",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of `shroud serve`. JSON in and out. `Authorization: Bearer <token>`: a missing header is a 403 (RWX's convention), an unknown, revoked or expired token a 401, a vault beyond the token's grant a 403. Bodies need `Content-Type: application/json` (415) and at most 1 MiB (413). Every error body is `Error`. Secret values are never returned, except by `rendered?mode=Full`.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "servers": [{ "url": "http://127.0.0.1:7878" }],
        "tags": [
            { "name": "server" }, { "name": "secrets" }, { "name": "vars" }, { "name": "references" },
            { "name": "fetch" }, { "name": "sandboxes" }, { "name": "deployments" }, { "name": "agents" },
            { "name": "audit" },
        ],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(),
        },
    })
}

/// The document as served: pretty JSON with a final newline, as the
/// repository's copy is written.
pub fn document_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = serde_json::to_string_pretty(&document()).expect("the document serializes");
        text.push('\n');
        text
    })
}

#[cfg(test)]
mod tests {
    /// The repository's `api/openapi.json` is this document; run with
    /// `SHROUD_WRITE_OPENAPI=1` to rewrite it after a change.
    #[test]
    fn the_repository_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/api/openapi.json");
        let text = super::document_text();
        if std::env::var_os("SHROUD_WRITE_OPENAPI").is_some() {
            std::fs::write(path, text).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == text,
            "api/openapi.json is not the document the server serves: run `SHROUD_WRITE_OPENAPI=1 cargo test --lib openapi` and commit it"
        );
    }
}
