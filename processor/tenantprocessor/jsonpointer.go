package tenantprocessor

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

func validPointer(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("JSON pointer %q must start with '/'", p)
	}
	return nil
}

// lookupPointer resolves an RFC 6901 JSON pointer in a decoded document and
// returns the value as a string: strings as they are, numbers and booleans in
// their JSON spelling. Objects, arrays and null are not attribute values.
func lookupPointer(doc any, pointer string) (string, error) {
	cur := doc
	for _, raw := range strings.Split(pointer, "/")[1:] {
		tok := strings.ReplaceAll(strings.ReplaceAll(raw, "~1", "/"), "~0", "~")
		switch node := cur.(type) {
		case map[string]any:
			v, ok := node[tok]
			if !ok {
				return "", fmt.Errorf("%s: no member %q", pointer, tok)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(node) {
				return "", fmt.Errorf("%s: no element %q in an array of %d", pointer, tok, len(node))
			}
			cur = node[i]
		default:
			return "", fmt.Errorf("%s: %q is below a scalar", pointer, tok)
		}
	}
	switch v := cur.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	default:
		return "", fmt.Errorf("%s: not a string, number or boolean", pointer)
	}
}
