package spool

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// fixUp makes data segment id's file as far as its framing goes: a header
// that checks out (with the input's flags) and every record's CRC right,
// so that arbitrary record bodies reach decodePart and decodeHeads.
func fixUp(id uint64, data []byte) []byte {
	if len(data) < segHeaderLen {
		return data
	}
	b := slices.Clone(data)
	copy(b, appendSegHeader(nil, id, binary.BigEndian.Uint32(b[16:])))
	seed := segSeed(id)
	for off := segHeaderLen; len(b)-off >= headerLen; {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if n < 1 || n > len(b)-off-headerLen {
			break
		}
		binary.BigEndian.PutUint32(b[off+4:], crc32.Update(seed, castagnoli, b[off+headerLen:off+headerLen+n]))
		off += headerLen + n
	}
	return b
}

// FuzzRecover opens a spool whose folder holds arbitrary bytes as segments
// 1 and 2 (fix: with headers and CRCs made to check out). Open never
// panics or fails; every part it returns is a whole part record that
// checks out in its segment, read back as it is there; and a second Open
// returns the same.
func FuzzRecover(f *testing.F) {
	// Seeds: a real log's segments (parts of two queues, a head, a
	// compacted part), whole, cut and with records made to check out.
	dir := f.TempDir()
	s, _, _, _, err := Open(Options{Dir: dir, SegmentBytes: 200})
	if err != nil {
		f.Fatal(err)
	}
	var locs []Loc
	for seq := uint64(0); seq < 4; seq++ {
		for _, q := range []string{"metrics/a", "logs/b"} {
			res := <-s.Append(Part{Queue: q, Seq: seq, Items: int(seq), Data: small(q, seq)})
			if res.Err != nil {
				f.Fatal(res.Err)
			}
			locs = append(locs, res.Loc)
		}
		if seq == 1 {
			s.Ack("metrics/a", 1)
		}
	}
	res := <-s.Append(Part{Queue: "logs/b", Seq: 0, Data: small("logs/b", 0)})
	if res.Err != nil {
		f.Fatal(res.Err)
	}
	s.Release(locs[1])
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	seg1, _ := os.ReadFile(filepath.Join(dir, segName(1)))
	seg2, _ := os.ReadFile(filepath.Join(dir, segName(2)))
	f.Add(seg1, seg2, false)
	f.Add(seg1, seg2, true)
	f.Add(seg1[:len(seg1)-5], seg2[:30], false)
	flipped := slices.Clone(seg1)
	flipped[len(flipped)-3] ^= 0x20
	f.Add(flipped, seg2, false)
	f.Add(seg2, seg1, true)
	f.Add([]byte{}, []byte("OGSPOOL\x02"), false)
	f.Add(appendSegHeader(nil, 1, segRecycled), appendSegHeader(nil, 1, 0), false)
	f.Add(append(appendSegHeader(nil, 1, 0), 0, 0, 0, 3, 0, 0, 0, 0, recPart, 0, 0), []byte(nil), true)
	f.Add(append(appendSegHeader(nil, 1, 0), 0, 0, 0, 4, 0, 0, 0, 0, recHeads, 0, 9, 1), []byte(nil), true)

	f.Fuzz(checkRecover)
}

func checkRecover(t *testing.T, seg1, seg2 []byte, fix bool) {
	files := map[uint64][]byte{1: seg1, 2: seg2}
	dir := t.TempDir()
	for id, b := range files {
		if fix {
			b = fixUp(id, b)
			files[id] = b
		}
		if err := os.WriteFile(filepath.Join(dir, segName(id)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, parts, heads, _, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for i, p := range parts {
		b, ok := files[p.Loc.Seg]
		if !ok {
			t.Fatalf("part %d in segment %d, not one of the files", i, p.Loc.Seg)
		}
		bodyOff := p.Loc.Off - 15 - int64(len(p.Queue))
		start := bodyOff - headerLen
		end := p.Loc.Off + int64(p.Loc.Len)
		if start < segHeaderLen || end > int64(len(b)) || p.Loc.Len < 0 {
			t.Fatalf("part %d at %+v: outside its segment's %d bytes", i, p.Loc, len(b))
		}
		body := b[bodyOff:end]
		if n := binary.BigEndian.Uint32(b[start:]); int64(n) != end-bodyOff {
			t.Fatalf("part %d: its record's length is %d, not %d", i, n, end-bodyOff)
		}
		if crc32.Update(segSeed(p.Loc.Seg), castagnoli, body) != binary.BigEndian.Uint32(b[start+4:]) {
			t.Fatalf("part %d: its record does not check out", i)
		}
		if body[0] != recPart || binary.BigEndian.Uint64(body[1:]) != p.Seq || string(body[15:15+len(p.Queue)]) != p.Queue {
			t.Fatalf("part %d: not the record it says", i)
		}
		if p.Seq < heads[p.Queue] {
			t.Fatalf("part %d: sent (head %d)", i, heads[p.Queue])
		}
		if i > 0 && (parts[i-1].Queue > p.Queue || parts[i-1].Queue == p.Queue && parts[i-1].Seq >= p.Seq) {
			t.Fatalf("parts %d and %d: not by queue in sequence order, or twice", i-1, i)
		}
		got, err := s.Read(p.Loc)
		if err != nil || string(got) != string(b[p.Loc.Off:end]) {
			t.Fatalf("part %d: read %q, %v", i, got, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, again, heads2, _, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open again: %v", err)
	}
	defer func() { _ = s.Close() }()
	if !slices.EqualFunc(parts, again, func(a, b Part) bool {
		return a.Queue == b.Queue && a.Seq == b.Seq && a.Items == b.Items && a.Loc == b.Loc
	}) {
		t.Fatalf("opened again: %v, not %v", again, parts)
	}
	for q, h := range heads {
		if heads2[q] != h {
			t.Fatalf("opened again: head of %q %d, not %d", q, heads2[q], h)
		}
	}
}
