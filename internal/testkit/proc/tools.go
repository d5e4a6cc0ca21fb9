package proc

import (
	"fmt"
	"os"
	"path/filepath"
)

// Tool finds a binary the Makefile installs into .tools/bin: $env if set,
// else <root>/.tools/bin/<name>; the error says which make target installs it.
func Tool(root, env, name, target string) (string, error) {
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(root, ".tools", "bin", name)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found at %s: run 'make %s' or set %s: %w", name, p, target, env, err)
	}
	return p, nil
}
