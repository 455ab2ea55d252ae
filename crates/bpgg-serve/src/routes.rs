//! The route table: every route once, with its handler and its documentation. The router
//! ([`router`]) and the OpenAPI document ([`crate::openapi::document`]) are both built from it,
//! so the two cannot drift apart; a table is leaner than an OpenAPI macro framework and keeps
//! the handlers plain functions.

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, delete, get, patch, post, put, MethodRouter};
use axum::Router;
use serde_json::{json, Value};

use crate::auth::require_token;
use crate::handlers::{fit, images, predict, projects, system};
use crate::layers::observe;
use crate::state::AppState;

/// A query parameter.
#[derive(Debug, Clone)]
pub struct QueryParam {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
    pub schema: Value,
}

/// One possible answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub description: &'static str,
    /// (media type, schema); empty for no body.
    pub content: Vec<(&'static str, Value)>,
}

/// What the OpenAPI document says about a route.
#[derive(Debug, Clone)]
pub struct Doc {
    pub operation_id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    /// Whether the route needs the token (when the service has one).
    pub auth: bool,
    pub query: Vec<QueryParam>,
    /// (media types with schemas, required).
    pub body: Option<(Vec<(&'static str, Value)>, bool)>,
    pub answers: Vec<Answer>,
}

/// A route: method, path (axum's syntax, which for captures is OpenAPI's), handler, doc.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub doc: Doc,
    handler: MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("method", &self.method)
            .field("path", &self.path)
            .finish()
    }
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_body(name: &str) -> Vec<(&'static str, Value)> {
    vec![("application/json", schema(name))]
}

fn binary() -> Value {
    json!({ "type": "string", "format": "binary" })
}

fn ok(status: u16, description: &'static str, content: Vec<(&'static str, Value)>) -> Answer {
    Answer {
        status,
        description,
        content,
    }
}

fn err(status: u16, description: &'static str) -> Answer {
    ok(status, description, json_body("Error"))
}

/// Answers every route with a body or an id can give.
fn common(auth: bool) -> Vec<Answer> {
    let mut answers = vec![err(400, "Malformed request (the message says what).")];
    if auth {
        answers.push(err(401, "Missing or wrong token."));
    }
    answers.push(err(
        503,
        "Timed out or stopping (`Retry-After` when retrying helps).",
    ));
    answers
}

fn doc(
    operation_id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: &'static str,
) -> Doc {
    Doc {
        operation_id,
        tag,
        summary,
        description,
        auth: true,
        query: Vec::new(),
        body: None,
        answers: Vec::new(),
    }
}

impl Doc {
    fn open(mut self) -> Self {
        self.auth = false;
        self
    }
    fn query(mut self, p: QueryParam) -> Self {
        self.query.push(p);
        self
    }
    fn body(mut self, content: Vec<(&'static str, Value)>, required: bool) -> Self {
        self.body = Some((content, required));
        self
    }
    fn answers(mut self, answers: Vec<Answer>) -> Self {
        self.answers = answers;
        let common = common(self.auth);
        self.answers.extend(common);
        self.answers.sort_by_key(|a| a.status);
        self
    }
}

fn route(method: Method, path: &'static str, doc: Doc, handler: MethodRouter<AppState>) -> Route {
    Route {
        method,
        path,
        doc,
        handler,
    }
}

const IMAGE_TYPES: [&str; 3] = ["image/png", "image/jpeg", "image/tiff"];

fn image_body() -> Vec<(&'static str, Value)> {
    IMAGE_TYPES.iter().map(|t| (*t, binary())).collect()
}

/// Every route of the service.
pub fn table() -> Vec<Route> {
    let not_found_project = || err(404, "No such project.");
    let not_found_image = || err(404, "No such project or image.");
    let unusable = |d| err(422, d);
    vec![
        route(
            Method::GET,
            "/healthz",
            doc("healthz", "system", "Liveness", "Answers `ok` while the server runs.")
                .open()
                .answers(vec![ok(200, "Running.", vec![("text/plain", json!({"type": "string", "example": "ok"}))])]),
            get(system::healthz),
        ),
        route(
            Method::GET,
            "/metrics",
            doc(
                "metrics",
                "system",
                "Prometheus metrics",
                "Requests by route template, method and status; latency histogram by route; \
                 fits; predictions and forward passes; work admitted and rejected; projects, \
                 images, masks and models stored.",
            )
            .answers(vec![ok(200, "Text exposition format 0.0.4.", vec![("text/plain", json!({"type": "string"}))])]),
            get(system::metrics),
        ),
        route(
            Method::GET,
            "/v1/openapi.json",
            doc("openapi", "system", "This document", "Generated from the route table the router is built from.")
                .answers(vec![ok(200, "OpenAPI 3 document.", vec![("application/json", json!({"type": "object"}))])]),
            get(system::openapi),
        ),
        route(
            Method::GET,
            "/v1/info",
            doc(
                "info",
                "system",
                "What the service offers",
                "Version, schema version, limits, the library's default model options (what a \
                 fit body overrides), and the checkpoint and weight files a fit may name.",
            )
            .answers(vec![ok(200, "Service information.", json_body("Info"))]),
            get(system::info),
        ),
        route(
            Method::GET,
            "/",
            doc("studio", "studio", "The studio page", "The browser studio (embedded; no token needed to load it).")
                .open()
                .answers(vec![
                    ok(200, "HTML page (`ETag`; revalidated on every load).", vec![("text/html", json!({"type": "string"}))]),
                    ok(304, "Unchanged since the `ETag` sent in `If-None-Match`.", vec![]),
                ]),
            get(system::index),
        ),
        route(
            Method::GET,
            "/assets/{*path}",
            doc("studio_asset", "studio", "A studio file", "Embedded script, style, font or icon of the studio.")
                .open()
                .answers(vec![
                    ok(200, "The file (`ETag`; revalidated on every load).", vec![("application/octet-stream", binary())]),
                    ok(304, "Unchanged since the `ETag` sent in `If-None-Match`.", vec![]),
                    err(404, "No such file."),
                ]),
            get(system::asset),
        ),
        route(
            Method::POST,
            "/v1/projects",
            doc("create_project", "projects", "Create a project", "")
                .body(json_body("Name"), true)
                .answers(vec![ok(201, "Created (`Location` names it).", json_body("Project"))]),
            post(projects::create),
        ),
        route(
            Method::GET,
            "/v1/projects",
            doc("list_projects", "projects", "List projects", "Oldest first.")
                .answers(vec![ok(200, "Projects.", vec![("application/json", json!({"type": "array", "items": schema("Project")}))])]),
            get(projects::list),
        ),
        route(
            Method::GET,
            "/v1/projects/{id}",
            doc("get_project", "projects", "Show a project", "Counts of images and the current model's fit summary (`model`, null before the first fit).")
                .answers(vec![ok(200, "The project.", json_body("Project")), not_found_project()]),
            get(projects::show),
        ),
        route(
            Method::PATCH,
            "/v1/projects/{id}",
            doc("rename_project", "projects", "Rename a project", "")
                .body(json_body("Name"), true)
                .answers(vec![ok(200, "Renamed.", json_body("Project")), not_found_project()]),
            patch(projects::rename),
        ),
        route(
            Method::DELETE,
            "/v1/projects/{id}",
            doc("delete_project", "projects", "Delete a project", "With its images, masks and model.")
                .answers(vec![ok(204, "Deleted.", vec![]), not_found_project()]),
            delete(projects::delete),
        ),
        route(
            Method::POST,
            "/v1/projects/{id}/images",
            doc(
                "upload_image",
                "images",
                "Upload an image",
                "The image file (PNG, JPEG or TIFF) is the body. It is decoded (and refused \
                 past the pixel limit) before it is stored.",
            )
            .query(QueryParam {
                name: "role",
                required: true,
                description: "A defective part (needs a mask before a fit) or a good one.",
                schema: json!({"type": "string", "enum": ["defect", "normal"]}),
            })
            .body(image_body(), true)
            .answers(vec![
                ok(201, "Stored (`Location` names it).", json_body("Image")),
                not_found_project(),
                err(413, "Body over --max-body."),
                unusable("Empty, truncated, corrupt or oversized image, or not an image."),
                err(503, "Work queue full (`Retry-After`)."),
            ]),
            post(images::upload),
        ),
        route(
            Method::GET,
            "/v1/projects/{id}/images",
            doc("list_images", "images", "List a project's images", "Upload order.")
                .answers(vec![
                    ok(200, "Images.", vec![("application/json", json!({"type": "array", "items": schema("Image")}))]),
                    not_found_project(),
                ]),
            get(images::list),
        ),
        route(
            Method::GET,
            "/v1/projects/{id}/images/{image_id}",
            doc("download_image", "images", "Download an image", "The file as uploaded.")
                .answers(vec![
                    ok(200, "The image file.", image_body()),
                    not_found_image(),
                ]),
            get(images::download),
        ),
        route(
            Method::PATCH,
            "/v1/projects/{id}/images/{image_id}",
            doc("set_image_role", "images", "Change an image's role", "A mask is kept when a defect image becomes normal (and used again if it becomes a defect image).")
                .body(json_body("RoleChange"), true)
                .answers(vec![ok(200, "Changed.", json_body("Image")), not_found_image()]),
            patch(images::set_role),
        ),
        route(
            Method::DELETE,
            "/v1/projects/{id}/images/{image_id}",
            doc("delete_image", "images", "Delete an image", "With its mask.")
                .answers(vec![ok(204, "Deleted.", vec![]), not_found_image()]),
            delete(images::delete),
        ),
        route(
            Method::PUT,
            "/v1/projects/{id}/images/{image_id}/mask",
            doc(
                "put_mask",
                "images",
                "Set an image's mask",
                "A mask image of exactly the image's size; a pixel is defect when its gray \
                 value is above 127 (16-bit masks: nonzero). Stored as a 0/255 PNG.",
            )
            .body(image_body(), true)
            .answers(vec![
                ok(200, "Stored.", json_body("Image")),
                not_found_image(),
                err(413, "Body over --max-body."),
                unusable("Not an image, or not of the image's size."),
                err(503, "Work queue full (`Retry-After`)."),
            ]),
            put(images::put_mask),
        ),
        route(
            Method::GET,
            "/v1/projects/{id}/images/{image_id}/mask",
            doc("get_mask", "images", "Download an image's mask", "0/255 PNG of the image's size.")
                .answers(vec![
                    ok(200, "The mask.", vec![("image/png", binary())]),
                    err(404, "No such project or image, or the image has no mask."),
                ]),
            get(images::get_mask),
        ),
        route(
            Method::DELETE,
            "/v1/projects/{id}/images/{image_id}/mask",
            doc("delete_mask", "images", "Remove an image's mask", "")
                .answers(vec![
                    ok(204, "Removed.", vec![]),
                    err(404, "No such project or image, or the image has no mask."),
                ]),
            delete(images::delete_mask),
        ),
        route(
            Method::POST,
            "/v1/projects/{id}/fit",
            doc(
                "fit",
                "model",
                "Fit the project's model",
                "Encodes the supports (defect images with their masks, normal images) and \
                 stores the model; it replaces the previous one atomically for every predict \
                 that starts after the answer. Two fits of one project run one after the other. \
                 The optional body is the library's model configuration JSON (missing fields \
                 take the defaults of `GET /v1/info`) plus `checkpoint`, `shots` and \
                 `normal_shots`.",
            )
            .body(json_body("FitOptions"), false)
            .answers(vec![
                ok(200, "Fitted.", json_body("FitSummary")),
                not_found_project(),
                unusable("A defect image without a mask (named), no images, an empty or vanishing mask, options the library refuses, an unknown checkpoint or weight file."),
                err(503, "Work queue full (`Retry-After`)."),
            ]),
            post(fit::fit_project),
        ),
        route(
            Method::GET,
            "/v1/projects/{id}/model",
            doc("download_model", "model", "Download the fitted model", "The `.bpgg` file `bpgg fit` writes: `bpgg predict --model` reads it.")
                .answers(vec![
                    ok(200, "The model file.", vec![("application/octet-stream", binary())]),
                    not_found_project(),
                    err(409, "Not fitted yet."),
                ]),
            get(fit::download),
        ),
        route(
            Method::GET,
            "/v1/projects/{id}/model/info",
            doc("model_info", "model", "The current model's fit summary", "")
                .answers(vec![
                    ok(200, "The summary.", json_body("FitSummary")),
                    not_found_project(),
                    err(409, "Not fitted yet."),
                ]),
            get(fit::info),
        ),
        route(
            Method::POST,
            "/v1/projects/{id}/predict",
            doc(
                "predict",
                "model",
                "Localize defects in one image",
                "The image file is the body. The numbers are those `bpgg predict` reports for \
                 this model and image (the same library calls). Concurrent predicts of one \
                 model are scored in shared forward passes. Answers other than JSON carry the \
                 numbers in headers: `X-Image-Score`, `X-Threshold`, `X-Image-Threshold`, \
                 `X-Defective`, `X-Defect-Area-Px`, `X-Map-Width`, `X-Map-Height`, `X-Model-Sha256`.",
            )
            .query(QueryParam {
                name: "output",
                required: false,
                description: "json (default): the numbers; map: the anomaly map at the image's size; overlay: PNG of the image with the map and the mask's outline; mask: 0/255 PNG.",
                schema: json!({"type": "string", "enum": ["json", "map", "overlay", "mask"], "default": "json"}),
            })
            .query(QueryParam {
                name: "format",
                required: false,
                description: "With output=map: tiff (float32, as `bpgg predict` writes), f32 (raw little-endian float32, row-major, size in X-Map-Width/X-Map-Height: a browser reads it with `new Float32Array(...)`), json ({width, height, data}).",
                schema: json!({"type": "string", "enum": ["tiff", "f32", "json"], "default": "tiff"}),
            })
            .query(QueryParam {
                name: "threshold",
                required: false,
                description: "Pixel threshold for the mask, regions and verdict (default: the model's).",
                schema: json!({"type": "number"}),
            })
            .body(image_body(), true)
            .answers(vec![
                ok(
                    200,
                    "The prediction.",
                    vec![
                        ("application/json", schema("Prediction")),
                        ("image/tiff", binary()),
                        ("image/png", binary()),
                        ("application/octet-stream", binary()),
                    ],
                ),
                not_found_project(),
                err(409, "Not fitted yet."),
                err(413, "Body over --max-body."),
                unusable("Empty, truncated, corrupt or oversized image, or not an image."),
                err(503, "Work queue full (`Retry-After`), or timed out."),
            ]),
            post(predict::predict),
        ),
    ]
}

/// The service's router: the table's routes, each wrapped in metrics and the timeout and, where
/// the table says so, the token check; unknown routes answer 404 and wrong methods 405, in
/// JSON.
pub fn router(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for route in table() {
        let mut handler = route.handler;
        if route.doc.auth {
            handler = handler.layer(from_fn_with_state(state.clone(), require_token));
        }
        handler = handler.layer(from_fn_with_state((state.clone(), route.path), observe));
        router = router.route(route.path, handler);
    }
    let fallback = any(system::fallback)
        .layer(from_fn_with_state((state.clone(), "unmatched"), observe))
        .with_state(state.clone());
    router
        .method_not_allowed_fallback(system::method_not_allowed)
        .fallback_service(fallback)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}
