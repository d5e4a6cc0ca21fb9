package exepages

import "strings"

func splitLines(s string) []string { return strings.Split(s, "\n") }
func fields(s string) []string     { return strings.Fields(s) }
func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
func isHexRange(s string) bool {
	lo, hi, ok := strings.Cut(s, "-")
	return ok && lo != "" && hi != "" && strings.Trim(lo+hi, "0123456789abcdef") == ""
}
