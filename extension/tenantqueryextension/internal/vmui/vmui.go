// Package vmui holds VictoriaMetrics' web UI (vmui), as built and shipped
// inside the store's own binary at the pinned release (Apache-2.0, see
// LICENSE), so the read path serves it without the store's help and with
// every query it sends going through the read API's enforcement. `make
// vmui` refreshes dist/ from the module cache.
package vmui

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// FS is the UI's files: index.html, manifest.json, config.json, robots.txt
// and assets/.
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embedded tree always has dist/
	}
	return sub
}
