package httpapi

import (
	"net/http"
	"strconv"

	"github.com/tollgate/tollgate/api"
)

// PathOpenAPI serves the OpenAPI document of this API (package api) as
// JSON, without a token.
const PathOpenAPI = "/openapi.json"

// openAPI answers GET /openapi.json.
func (h *handler) openAPI(w http.ResponseWriter, r *http.Request) {
	doc, err := api.JSON()
	if err != nil { // unreachable: the package's tests load the document
		h.fail(w, r, "openapi", err)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(doc)))
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}
