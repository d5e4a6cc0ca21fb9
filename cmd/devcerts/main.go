// Command devcerts writes the development CA and certificates used by
// `make certs` (demo, smoke tests, system tests, benchmarks).
//
//	devcerts -dir .certs [-hosts localhost,127.0.0.1,::1]
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
)

func main() {
	dir := flag.String("dir", ".certs", "directory to write the CA and certificates into")
	hosts := flag.String("hosts", strings.Join(devcerts.DefaultServerHosts, ","), "comma-separated DNS names and IPs for the gateway certificate")
	flag.Parse()
	if err := devcerts.Write(devcerts.Options{Dir: *dir, ServerHosts: strings.Split(*hosts, ",")}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("devcerts: wrote %s, %s, %s to %s (development only)\n", devcerts.CAFile, devcerts.ServerCertFile, devcerts.ClientCertFile, *dir)
}
