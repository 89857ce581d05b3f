package fakedfu

import (
	"fmt"
	"strconv"
	"strings"
)

// page is one flash page of the fake's DfuSe memory.
type page struct {
	start, size uint32
	attr        byte // 'a'..'g'
}

func (p page) writable() bool { return (p.attr-'a'+1)&4 != 0 }
func (p page) erasable() bool { return (p.attr-'a'+1)&2 != 0 }

// parsePages is the fake's own reading of `@name/0xADDR/N*SIZEKg,...`: one entry per page.
func parsePages(s string) ([]page, error) {
	parts := strings.Split(strings.TrimPrefix(s, "@"), "/")
	if !strings.HasPrefix(s, "@") || len(parts) < 3 || len(parts)%2 == 0 {
		return nil, fmt.Errorf("fakedfu: bad memory map %q", s)
	}
	var pages []page
	for i := 1; i+1 < len(parts); i += 2 {
		addr, err := strconv.ParseUint(strings.TrimSpace(parts[i]), 0, 32)
		if err != nil {
			return nil, fmt.Errorf("fakedfu: memory map address %q: %v", parts[i], err)
		}
		for _, seg := range strings.Split(parts[i+1], ",") {
			seg = strings.TrimSpace(seg)
			star := strings.IndexByte(seg, '*')
			if star < 0 || len(seg) < star+3 {
				return nil, fmt.Errorf("fakedfu: memory map segment %q", seg)
			}
			n, err1 := strconv.Atoi(seg[:star])
			attr := seg[len(seg)-1]
			body := strings.TrimSpace(seg[star+1 : len(seg)-1])
			mult := uint64(1)
			switch body[len(body)-1] {
			case 'K':
				mult, body = 1024, body[:len(body)-1]
			case 'M':
				mult, body = 1<<20, body[:len(body)-1]
			case 'B':
				body = body[:len(body)-1]
			}
			size, err2 := strconv.ParseUint(strings.TrimSpace(body), 10, 32)
			if err1 != nil || err2 != nil || attr < 'a' || attr > 'g' {
				return nil, fmt.Errorf("fakedfu: memory map segment %q", seg)
			}
			for j := 0; j < n; j++ {
				pages = append(pages, page{start: uint32(addr), size: uint32(size * mult), attr: attr})
				addr += size * mult
			}
		}
	}
	return pages, nil
}
