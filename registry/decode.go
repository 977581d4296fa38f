package registry

import (
	"encoding/json"
	"strconv"

	"github.com/fleetplan/fleetplan/scheduler"
)

// decodeDevice decodes one registry entry exactly as json.Unmarshal into a
// zero scheduler.Device does. Entries as fleetplan writes them (the known
// fields once each, plain ASCII strings without escapes) take a fast path
// that allocates little and shares repeated values (statuses, classes,
// capabilities, metadata) through in; anything else (an unknown or
// repeated field, an escape, a null, other whitespace or case) goes through
// encoding/json, so the result never differs.
func decodeDevice(data []byte, in *interner) (scheduler.Device, error) {
	if d, ok := fastDecodeDevice(data, in, false); ok {
		return d, nil
	}
	return slowDecodeDevice(data)
}

// decodeEntry is decodeDevice for a registry entry whose ID the caller
// sets from the key: the fast path does not copy the stored one.
func decodeEntry(data []byte, in *interner) (scheduler.Device, error) {
	if d, ok := fastDecodeDevice(data, in, true); ok {
		return d, nil
	}
	return slowDecodeDevice(data)
}

func fastDecodeDevice(data []byte, in *interner, skipID bool) (scheduler.Device, bool) {
	var d scheduler.Device
	p := devParser{data: data, in: in, skipID: skipID}
	ok := p.device(&d)
	return d, ok
}

func slowDecodeDevice(data []byte) (scheduler.Device, error) {
	var d scheduler.Device
	err := json.Unmarshal(data, &d)
	return d, err
}

// interner shares the strings of repeated values between decoded entries;
// with shareMaps, also the Meta and Apps maps of entries whose encoded
// maps are identical (for the sync, which never modifies them).
type interner struct {
	m         map[string]string
	shareMaps bool
	metas     map[string]map[string]string
	apps      map[string]map[string]scheduler.AppSlot
	// caps holds decoded capabilities by their encoded bytes (a value:
	// always safe to share).
	caps map[string]scheduler.Capabilities
}

// maxSharedMaps bounds the maps kept for sharing.
const maxSharedMaps = 1 << 12

// maxInterned bounds the interner: past it, values are allocated as usual.
const maxInterned = 1 << 16

func (in *interner) get(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if in.m == nil {
		in.m = make(map[string]string, 256)
	}
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}

// devParser is the fast path of decodeDevice. Every method returns false
// when the input is anything but the plain form; the caller then falls
// back to encoding/json.
type devParser struct {
	data []byte
	pos  int
	in   *interner
	// skipID: read the "id" field without keeping it.
	skipID bool
}

func (p *devParser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *devParser) byte(c byte) bool {
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

// str reads a string without escapes, control or non-ASCII bytes (those
// json.Unmarshal may rewrite) and returns its bytes.
func (p *devParser) str() ([]byte, bool) {
	p.ws()
	if p.pos >= len(p.data) || p.data[p.pos] != '"' {
		return nil, false
	}
	start := p.pos + 1
	for i := start; i < len(p.data); i++ {
		switch c := p.data[i]; {
		case c == '"':
			p.pos = i + 1
			return p.data[start:i], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

// object reads {"key": value, ...}, calling field for each key with the
// parser positioned at the value; field returns false to give up.
func (p *devParser) object(field func(key []byte) bool) bool {
	if !p.byte('{') {
		return false
	}
	if p.byte('}') {
		return true
	}
	for {
		k, ok := p.str()
		if !ok || !p.byte(':') || !field(k) {
			return false
		}
		if p.byte(',') {
			continue
		}
		return p.byte('}')
	}
}

func (p *devParser) device(d *scheduler.Device) bool {
	var seen uint32
	once := func(bit uint32) bool {
		if seen&bit != 0 {
			return false // json.Unmarshal merges a repeated field: leave it to it
		}
		seen |= bit
		return true
	}
	setStr := func(bit uint32, dst *string, intern bool) bool {
		if !once(bit) {
			return false
		}
		b, ok := p.str()
		if !ok {
			return false
		}
		if intern {
			*dst = p.in.get(b)
		} else {
			*dst = string(b)
		}
		return true
	}
	ok := p.object(func(k []byte) bool {
		switch string(k) {
		case "id":
			if p.skipID {
				if !once(1 << 0) {
					return false
				}
				_, ok := p.str()
				return ok
			}
			return setStr(1<<0, &d.ID, false)
		case "name":
			return setStr(1<<1, &d.Name, false)
		case "class":
			return setStr(1<<2, &d.Class, true)
		case "datacenter":
			return setStr(1<<3, &d.Datacenter, true)
		case "nomad_status":
			return setStr(1<<4, &d.NomadStatus, true)
		case "eligibility":
			return setStr(1<<5, &d.Eligibility, true)
		case "consul_status":
			return setStr(1<<6, &d.ConsulStatus, true)
		case "address":
			return setStr(1<<7, &d.Address, false)
		case "capabilities":
			return once(1<<8) && p.capabilities(&d.Capabilities)
		case "meta":
			return once(1<<9) && p.meta(&d.Meta)
		case "apps":
			return once(1<<10) && p.apps(&d.Apps)
		case "last_heartbeat":
			if !once(1 << 11) {
				return false
			}
			p.ws()
			start := p.pos
			if _, ok := p.str(); !ok {
				return false
			}
			// What json.Unmarshal calls: the quoted value.
			return d.LastHeartbeat.UnmarshalJSON(p.data[start:p.pos]) == nil
		case "status":
			var s string
			if !setStr(1<<12, &s, true) {
				return false
			}
			d.Status = scheduler.RegistryStatus(s)
			return true
		case "reason":
			return setStr(1<<13, &d.Reason, true)
		case "resolved":
			if !once(1 << 14) {
				return false
			}
			v, ok := p.boolean()
			d.Resolved = v
			return ok
		}
		return false
	})
	if !ok {
		return false
	}
	p.ws()
	return p.pos == len(p.data)
}

func (p *devParser) boolean() (bool, bool) {
	p.ws()
	rest := p.data[p.pos:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.pos += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.pos += 5
		return false, true
	}
	return false, false
}

// integer reads a plain JSON integer that fits an int.
func (p *devParser) integer() (int, bool) {
	p.ws()
	start := p.pos
	if p.pos < len(p.data) && p.data[p.pos] == '-' {
		p.pos++
	}
	digits := p.pos
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
	}
	n := p.pos - digits
	if n == 0 || (n > 1 && p.data[digits] == '0') {
		return 0, false
	}
	if p.pos < len(p.data) {
		switch p.data[p.pos] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	v, err := strconv.Atoi(string(p.data[start:p.pos]))
	return v, err == nil
}

func (p *devParser) capabilities(c *scheduler.Capabilities) bool {
	in := p.in
	if in == nil {
		return p.capabilityFields(c)
	}
	p.ws()
	start := p.pos
	if shared, ok := in.caps[string(p.rawObject())]; ok {
		*c = shared
		return true
	}
	p.pos = start
	if !p.capabilityFields(c) {
		return false
	}
	if len(in.caps) < maxSharedMaps {
		if in.caps == nil {
			in.caps = map[string]scheduler.Capabilities{}
		}
		in.caps[string(p.data[start:p.pos])] = *c
	}
	return true
}

func (p *devParser) capabilityFields(c *scheduler.Capabilities) bool {
	var seen uint8
	str := func(bit uint8, dst *string) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		b, ok := p.str()
		if ok {
			*dst = p.in.get(b)
		}
		return ok
	}
	return p.object(func(k []byte) bool {
		switch string(k) {
		case "arch":
			return str(1<<0, &c.Arch)
		case "os":
			return str(1<<1, &c.OS)
		case "kernel":
			return str(1<<2, &c.Kernel)
		case "accelerator":
			return str(1<<3, &c.Accelerator)
		case "model":
			return str(1<<4, &c.Model)
		case "memory_mb":
			if seen&(1<<5) != 0 {
				return false
			}
			seen |= 1 << 5
			v, ok := p.integer()
			c.MemoryMB = v
			return ok
		}
		return false
	})
}

func (p *devParser) meta(m *map[string]string) bool {
	p.ws()
	start := p.pos
	if in := p.in; in != nil && in.shareMaps {
		if shared, ok := in.metas[string(p.rawObject())]; ok {
			*m = shared
			return true
		}
		p.pos = start
	}
	out := make(map[string]string, 8)
	ok := p.object(func(k []byte) bool {
		if _, dup := out[string(k)]; dup {
			return false
		}
		key := p.in.get(k)
		v, ok := p.str()
		if ok {
			out[key] = p.in.get(v)
		}
		return ok
	})
	*m = out
	if in := p.in; ok && in != nil && in.shareMaps && len(in.metas) < maxSharedMaps {
		if in.metas == nil {
			in.metas = map[string]map[string]string{}
		}
		in.metas[string(p.data[start:p.pos])] = out
	}
	return ok
}

// rawObject skips a flat or nested object without validating it (the
// bytes are only a key: a map is shared only with an entry whose bytes
// decoded to it) and returns its bytes; nil when it is not one.
func (p *devParser) rawObject() []byte {
	start := p.pos
	depth := 0
	for i := start; i < len(p.data); i++ {
		switch p.data[i] {
		case '"':
			for i++; i < len(p.data) && p.data[i] != '"'; i++ {
				if p.data[i] == '\\' {
					return nil
				}
			}
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				p.pos = i + 1
				return p.data[start:p.pos]
			}
		}
	}
	return nil
}

func (p *devParser) apps(m *map[string]scheduler.AppSlot) bool {
	p.ws()
	start := p.pos
	if in := p.in; in != nil && in.shareMaps {
		if shared, ok := in.apps[string(p.rawObject())]; ok {
			*m = shared
			return true
		}
		p.pos = start
	}
	out := make(map[string]scheduler.AppSlot, 2)
	ok := p.object(func(k []byte) bool {
		if _, dup := out[string(k)]; dup {
			return false
		}
		key := p.in.get(k)
		var a scheduler.AppSlot
		var seen uint8
		ok := p.object(func(f []byte) bool {
			var dst *string
			var bit uint8
			switch string(f) {
			case "slot":
				dst, bit = &a.Slot, 1
			case "version":
				dst, bit = &a.Version, 2
			default:
				return false
			}
			if seen&bit != 0 {
				return false
			}
			seen |= bit
			b, ok := p.str()
			if ok {
				*dst = p.in.get(b)
			}
			return ok
		})
		out[key] = a
		return ok
	})
	*m = out
	if in := p.in; ok && in != nil && in.shareMaps && len(in.apps) < maxSharedMaps {
		if in.apps == nil {
			in.apps = map[string]map[string]scheduler.AppSlot{}
		}
		in.apps[string(p.data[start:p.pos])] = out
	}
	return ok
}
