// Command g2a-docker-driver runs Docker 20.10's own aufs graph driver
// (daemon/graphdriver/aufs, with pkg/archive, pkg/chrootarchive and
// pkg/directory, from Debian's golang-github-docker-docker-dev) on a Docker
// root, for graph2aufs's tests (tests/docker_driver.rs), and prints what
// each call returned as JSON on standard output.
//
//	g2a-docker-driver [-read-only] DOCKER_ROOT COMMAND ARGS...
//
//	inspect ID PARENT [ID PARENT]...  per layer: Exists, Diff (every tar header
//	                                  and a hash of each file's contents),
//	                                  DiffSize, Changes, GetMetadata; and Status
//	init                              the driver's Init only
//	create ID PARENT                  Create
//	apply-diff ID PARENT TARFILE      ApplyDiff of an uncompressed tar
//	remove ID                         Remove
//	rmi ID                            Docker 1.8's graph.Delete (docker rmi)
//	rm ID                             Docker 1.8's container removal (docker rm)
//
// PARENT is "" for none. The driver's root is DOCKER_ROOT/aufs; each run
// starts with the driver's Init (less its aufs module check), or with
// -read-only, with the same Driver value without Init's directory set-up.
// Nothing here mounts aufs: Diff, DiffSize, ApplyDiff and Changes given
// the layer's own parent work on diff/<id> directly (only Get mounts, and
// the driver calls Get only for another parent, through its naive
// differ). Status probes for aufs's dirperm1 with an aufs mount, which
// fails without aufs; ApplyDiff's untar runs in a child chrooted into the
// layer, in a mount namespace of its own.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/docker/docker/daemon/graphdriver/aufs"
	"github.com/docker/docker/pkg/reexec"
	"github.com/sirupsen/logrus"
)

func main() {
	// ApplyDiff untars in a re-executed copy of this binary (docker-untar,
	// chrooted into the layer), as the daemon does.
	if reexec.Init() {
		return
	}
	readOnly := flag.Bool("read-only", false, "open the driver without Init's directory set-up")
	flag.Parse()
	args := flag.Args()
	if len(args) < 2 {
		fail("usage: g2a-docker-driver [-read-only] DOCKER_ROOT COMMAND ARGS...")
	}
	h := &harness{dockerRoot: filepath.Clean(args[0])}
	// The driver logs what it skips or ignores (and pkg/archive what it
	// cannot read): kept, without times, as part of each result.
	logrus.SetOutput(&h.log)
	logrus.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true, DisableColors: true})
	root := filepath.Join(h.dockerRoot, "aufs")
	var err error
	if *readOnly {
		h.driver, err = aufs.OpenReadOnly(root)
	} else {
		h.driver, err = aufs.InitWithoutModuleCheck(root, nil, nil, nil)
	}
	if err != nil {
		fail("the driver's Init: " + h.clean(err.Error()))
	}
	cmd, rest := args[1], args[2:]
	switch {
	case cmd == "inspect" && len(rest)%2 == 0:
		h.print(h.inspect(rest))
	case cmd == "init" && len(rest) == 0:
		h.print(struct{}{})
	case cmd == "create" && len(rest) == 2:
		h.done(h.driver.Create(rest[0], rest[1], nil))
	case cmd == "apply-diff" && len(rest) == 3:
		h.applyDiff(rest[0], rest[1], rest[2])
	case cmd == "remove" && len(rest) == 1:
		h.done(h.driver.Remove(rest[0]))
	case cmd == "rmi" && len(rest) == 1:
		h.done(h.deleteImage(rest[0]))
	case cmd == "rm" && len(rest) == 1:
		h.done(h.removeContainer(rest[0]))
	default:
		fail(fmt.Sprintf("unknown command or wrong arguments: %q", args[1:]))
	}
}

type harness struct {
	dockerRoot string
	driver     *aufs.Driver
	log        bytes.Buffer
}

// Layer is what the driver says of one layer.
type Layer struct {
	ID       string   `json:"id"`
	Parent   string   `json:"parent"`
	Exists   bool     `json:"exists"`
	Diff     Diff     `json:"diff"`
	DiffSize Size     `json:"diff_size"`
	Changes  Changes  `json:"changes"`
	Metadata Metadata `json:"metadata"`
	// What the driver and pkg/archive logged meanwhile.
	Log []string `json:"log"`
}

// Diff is the archive Diff returned, entry by entry, or why it failed.
type Diff struct {
	Entries []Entry `json:"entries"`
	Error   *string `json:"error"`
}

// Entry is one tar header and the SHA-256 of the data that follows it.
type Entry struct {
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Linkname   string            `json:"linkname"`
	Size       int64             `json:"size"`
	Mode       string            `json:"mode"`
	UID        int               `json:"uid"`
	GID        int               `json:"gid"`
	Uname      string            `json:"uname"`
	Gname      string            `json:"gname"`
	ModTime    string            `json:"mtime"`
	AccessTime string            `json:"atime"`
	ChangeTime string            `json:"ctime"`
	Devmajor   int64             `json:"devmajor"`
	Devminor   int64             `json:"devminor"`
	PAXRecords map[string]string `json:"pax"`
	Format     string            `json:"format"`
	SHA256     string            `json:"sha256"`
}

// Size is what DiffSize returned.
type Size struct {
	Size  int64   `json:"size"`
	Error *string `json:"error"`
}

// Changes is what Changes returned: `docker diff` lines, or the error.
type Changes struct {
	Changes []string `json:"changes"`
	Error   *string  `json:"error"`
}

// Metadata is what GetMetadata returned.
type Metadata struct {
	Metadata map[string]string `json:"metadata"`
	Error    *string           `json:"error"`
}

// Inspection is the result of `inspect`.
type Inspection struct {
	Status [][2]string `json:"status"`
	Layers []Layer     `json:"layers"`
	Log    []string    `json:"log"`
}

func (h *harness) inspect(pairs []string) Inspection {
	var out Inspection
	for i := 0; i < len(pairs); i += 2 {
		id, parent := pairs[i], pairs[i+1]
		l := Layer{ID: text(id), Parent: text(parent), Exists: h.driver.Exists(id)}
		l.Diff = h.diff(id, parent)
		size, err := h.driver.DiffSize(id, parent)
		l.DiffSize = Size{size, h.errText(err)}
		changes, err := h.driver.Changes(id, parent)
		l.Changes.Error = h.errText(err)
		if err == nil {
			l.Changes.Changes = []string{}
			for _, c := range changes {
				l.Changes.Changes = append(l.Changes.Changes, text(c.String()))
			}
		}
		meta, err := h.driver.GetMetadata(id)
		l.Metadata = Metadata{meta, h.errText(err)}
		l.Log = h.takeLog()
		out.Layers = append(out.Layers, l)
	}
	for _, kv := range h.driver.Status() {
		out.Status = append(out.Status, [2]string{kv[0], h.clean(kv[1])})
	}
	out.Log = h.takeLog()
	return out
}

// diff reads the whole archive Diff returns; an error while reading it
// (pkg/archive reports them through the pipe) ends the entries.
func (h *harness) diff(id, parent string) Diff {
	d := Diff{Entries: []Entry{}}
	rc, err := h.driver.Diff(id, parent)
	if err != nil {
		d.Error = h.errText(err)
		return d
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return d
		}
		if err != nil {
			d.Error = h.errText(err)
			return d
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			d.Error = h.errText(err)
			return d
		}
		pax := map[string]string{}
		for k, v := range hdr.PAXRecords {
			pax[text(k)] = text(v)
		}
		d.Entries = append(d.Entries, Entry{
			Name:       text(hdr.Name),
			Type:       string(rune(hdr.Typeflag)),
			Linkname:   text(hdr.Linkname),
			Size:       hdr.Size,
			Mode:       strconv.FormatInt(hdr.Mode, 8),
			UID:        hdr.Uid,
			GID:        hdr.Gid,
			Uname:      text(hdr.Uname),
			Gname:      text(hdr.Gname),
			ModTime:    timeText(hdr.ModTime),
			AccessTime: timeText(hdr.AccessTime),
			ChangeTime: timeText(hdr.ChangeTime),
			Devmajor:   hdr.Devmajor,
			Devminor:   hdr.Devminor,
			PAXRecords: pax,
			Format:     hdr.Format.String(),
			SHA256:     hex.EncodeToString(sum.Sum(nil)),
		})
	}
}

func (h *harness) applyDiff(id, parent, tarfile string) {
	f, err := os.Open(tarfile)
	if err != nil {
		fail(err.Error())
	}
	defer f.Close()
	size, err := h.driver.ApplyDiff(id, parent, f)
	if err != nil {
		h.failWith(err)
	}
	h.print(struct {
		Size int64    `json:"size"`
		Log  []string `json:"log"`
	}{size, h.takeLog()})
}

// deleteImage is Docker 1.8.1's graph.Delete (graph/graph.go): the image's
// directory renamed into a fresh graph/_tmp/<x> (0700), the driver's Remove,
// then the trashed directory removed. <x> is derived from the id, not
// random, so that two roots get the same names.
func (h *harness) deleteImage(id string) error {
	tmp := filepath.Join(h.dockerRoot, "graph", "_tmp", "deleting-"+id)
	if err := os.MkdirAll(tmp, 0700); err != nil {
		return err
	}
	image := filepath.Join(h.dockerRoot, "graph", id)
	if err := os.Rename(image, tmp); err != nil {
		os.RemoveAll(tmp)
		tmp = image
	}
	if err := h.driver.Remove(id); err != nil {
		return err
	}
	return os.RemoveAll(tmp)
}

// removeContainer is what Docker 1.8.1's daemon.rm does on disk: the
// driver's Remove of the container's layer and of its init layer, then
// containers/<id> removed.
func (h *harness) removeContainer(id string) error {
	if err := h.driver.Remove(id); err != nil {
		return fmt.Errorf("Driver %s failed to remove root filesystem %s: %s", h.driver, id, err)
	}
	initID := fmt.Sprintf("%s-init", id)
	if err := h.driver.Remove(initID); err != nil {
		return fmt.Errorf("Driver %s failed to remove init filesystem %s: %s", h.driver, initID, err)
	}
	return os.RemoveAll(filepath.Join(h.dockerRoot, "containers", id))
}

func (h *harness) done(err error) {
	if err != nil {
		h.failWith(err)
	}
	h.print(struct {
		Log []string `json:"log"`
	}{h.takeLog()})
}

func (h *harness) failWith(err error) {
	fail(h.clean(err.Error()) + "\n" + strings.Join(h.takeLog(), "\n"))
}

func (h *harness) print(v interface{}) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fail("writing the result: " + err.Error())
	}
}

// clean replaces the Docker root in a message by ROOT: the same call on
// two roots says the same.
func (h *harness) clean(s string) string {
	return strings.ReplaceAll(s, h.dockerRoot, "ROOT")
}

func (h *harness) errText(err error) *string {
	if err == nil {
		return nil
	}
	s := text(h.clean(err.Error()))
	return &s
}

// takeLog returns the lines logged since the last call, in order.
func (h *harness) takeLog() []string {
	lines := []string{}
	for _, l := range strings.Split(h.log.String(), "\n") {
		if l != "" {
			lines = append(lines, text(h.clean(l)))
		}
	}
	h.log.Reset()
	return lines
}

// text is s if it is UTF-8, else "bytes:" and its Go-quoted form: JSON
// would replace the bytes that are not UTF-8, and names that differ would
// compare equal.
func text(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return "bytes:" + strconv.Quote(s)
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "g2a-docker-driver: "+msg)
	os.Exit(1)
}
