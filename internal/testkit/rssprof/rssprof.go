// Package rssprof attributes a running Go process's resident pages of its
// own executable to the packages whose code and data they hold: which
// packages' start-up faulted in the memory a user sees in top.
//
// It reads /proc/<pid>/maps (the executable's mappings), /proc/<pid>/pagemap
// (which of their pages are resident) and the executable's ELF symbols
// (which symbol, hence package, each resident byte belongs to). The
// executable must have its symbol table (built without -s); a stripped
// build of the same source has the same layout, so its profile is the
// unstripped one's.
package rssprof

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

const pageSize = 4096

// Package is one package's (or section's) resident bytes.
type Package struct {
	Name  string
	Bytes int64
}

// Profile is the resident executable pages of a process.
type Profile struct {
	ResidentBytes int64     // every resident page of the executable's mappings
	Packages      []Package // by bytes, largest first
}

type sym struct {
	addr, size uint64
	pkg        string
}

// Take profiles process pid, whose executable (with symbols) is exe.
func Take(pid int, exe string) (*Profile, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("rssprof: %s has no symbol table (built with -s?): %w", exe, err)
	}
	var table []sym
	for _, s := range syms {
		if s.Size == 0 || s.Value == 0 {
			continue
		}
		table = append(table, sym{addr: s.Value, size: s.Size, pkg: packageOf(s.Name)})
	}
	sort.Slice(table, func(i, j int) bool { return table[i].addr < table[j].addr })

	target, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, err
	}
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	defer func() { _ = maps.Close() }()
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, err
	}
	defer func() { _ = pm.Close() }()

	byPkg := map[string]int64{}
	p := &Profile{}
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.TrimSuffix(fields[5], " (deleted)") != strings.TrimSuffix(target, " (deleted)") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		off, _ := strconv.ParseUint(fields[2], 16, 64)
		n := (end - start) / pageSize
		bits := make([]byte, 8*n)
		if _, err := pm.ReadAt(bits, int64(start/pageSize*8)); err != nil && err != io.EOF {
			return nil, fmt.Errorf("rssprof: pagemap: %w", err)
		}
		for i := uint64(0); i < n; i++ {
			if binary.LittleEndian.Uint64(bits[8*i:])&(1<<63) == 0 {
				continue
			}
			p.ResidentBytes += pageSize
			attribute(f, table, off+i*pageSize, byPkg)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for name, b := range byPkg {
		p.Packages = append(p.Packages, Package{Name: name, Bytes: b})
	}
	sort.Slice(p.Packages, func(i, j int) bool {
		if p.Packages[i].Bytes != p.Packages[j].Bytes {
			return p.Packages[i].Bytes > p.Packages[j].Bytes
		}
		return p.Packages[i].Name < p.Packages[j].Name
	})
	return p, nil
}

// attribute splits the page at file offset off among the symbols it
// holds; bytes no symbol covers go to the section's name.
func attribute(f *elf.File, table []sym, off uint64, byPkg map[string]int64) {
	var sec *elf.Section
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS && s.Addr != 0 && off >= s.Offset && off < s.Offset+s.Size {
			sec = s
			break
		}
	}
	if sec == nil {
		byPkg["(ELF headers and padding)"] += pageSize
		return
	}
	lo := sec.Addr + (off - sec.Offset)
	hi := min(lo+pageSize, sec.Addr+sec.Size)
	covered := uint64(0)
	i := sort.Search(len(table), func(i int) bool { return table[i].addr+table[i].size > lo })
	for ; i < len(table) && table[i].addr < hi; i++ {
		a, b := max(lo, table[i].addr), min(hi, table[i].addr+table[i].size)
		if b > a {
			byPkg[table[i].pkg] += int64(b - a)
			covered += b - a
		}
	}
	if rest := int64(pageSize) - int64(min(covered, pageSize)); rest > 0 {
		byPkg["("+sec.Name+")"] += rest
	}
}

// packageOf is the import path of a Go symbol's package; runtime-made
// symbols (type descriptors, strings, ...) are grouped by their prefix.
func packageOf(name string) string {
	if i := strings.IndexByte(name, ':'); i > 0 && !strings.Contains(name[:i], ".") {
		return "(" + name[:i] + ":*)"
	}
	slash := strings.LastIndexByte(name, '/')
	if slash < 0 {
		slash = 0
	}
	if dot := strings.IndexByte(name[slash:], '.'); dot > 0 {
		return name[:slash+dot]
	}
	return name
}

// Top writes the n largest packages.
func (p *Profile) Top(w io.Writer, n int) {
	fmt.Fprintf(w, "resident pages of the executable: %.1f MiB\n", float64(p.ResidentBytes)/(1<<20))
	for i, pk := range p.Packages {
		if i == n {
			break
		}
		fmt.Fprintf(w, "  %7.2f MiB  %s\n", float64(pk.Bytes)/(1<<20), pk.Name)
	}
}
