// This file is graph2aufs's own, added to a byte-for-byte copy of Docker
// 20.10's daemon/graphdriver/aufs (Debian's golang-github-docker-docker-dev):
// the Driver value as Init builds it, without Init's check for the aufs
// kernel module, which mainline Linux lacks. Nothing else of the driver is
// changed or bypassed.

package aufs // import "github.com/docker/docker/daemon/graphdriver/aufs"

import (
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/docker/docker/daemon/graphdriver"
	"github.com/docker/docker/pkg/idtools"
	"github.com/docker/docker/pkg/system"
	"github.com/moby/locker"
)

// InitWithoutModuleCheck is Init minus its first statement
// (`supportsAufs()`, which loads and looks for the aufs kernel module),
// Init's other statements in their order: like Init it refuses a root on
// aufs, btrfs or eCryptfs, creates the root and mnt/, diff/, layers/ (mode
// 0710, chmod'ing existing ones), and removes stale `-removing` directories.
func InitWithoutModuleCheck(root string, options []string, uidMaps, gidMaps []idtools.IDMap) (*Driver, error) {
	// Perform feature detection on /var/lib/docker/aufs if it's an existing directory.
	// This covers situations where /var/lib/docker/aufs is a mount, and on a different
	// filesystem than /var/lib/docker.
	// If the path does not exist, fall back to using /var/lib/docker for feature detection.
	testdir := root
	if _, err := os.Stat(testdir); os.IsNotExist(err) {
		testdir = filepath.Dir(testdir)
	}
	a, err := newDriver(root, testdir, uidMaps, gidMaps)
	if err != nil {
		return nil, err
	}

	paths := []string{
		"mnt",
		"diff",
		"layers",
	}

	currentID := idtools.CurrentIdentity()
	_, rootGID, err := idtools.GetRootUIDGID(uidMaps, gidMaps)
	if err != nil {
		return nil, err
	}
	dirID := idtools.Identity{
		UID: currentID.UID,
		GID: rootGID,
	}

	// Create the root aufs driver dir
	if err := idtools.MkdirAllAndChown(root, 0710, dirID); err != nil {
		return nil, err
	}

	// Populate the dir structure
	for _, p := range paths {
		if err := idtools.MkdirAllAndChown(path.Join(root, p), 0710, dirID); err != nil {
			return nil, err
		}
	}

	for _, path := range []string{"mnt", "diff"} {
		p := filepath.Join(root, path)
		entries, err := os.ReadDir(p)
		if err != nil {
			logger.WithError(err).WithField("dir", p).Error("error reading dir entries")
			continue
		}
		for _, entry := range entries {
			if !entry.IsDir() {
				continue
			}
			if strings.HasSuffix(entry.Name(), "-removing") {
				logger.WithField("dir", entry.Name()).Debug("Cleaning up stale layer dir")
				if err := system.EnsureRemoveAll(filepath.Join(p, entry.Name())); err != nil {
					logger.WithField("dir", entry.Name()).WithError(err).Error("Error removing stale layer dir")
				}
			}
		}
	}

	a.naiveDiff = graphdriver.NewNaiveDiffDriver(a, uidMaps, gidMaps)
	return a, nil
}

// OpenReadOnly is the Driver InitWithoutModuleCheck returns (the same
// backing file system detection and refusals), without Init's directory
// set-up, which writes (mkdir, chmod, removal of `-removing` directories):
// for a root no daemon could write to, e.g. graph2aufs's read-only view.
func OpenReadOnly(root string) (*Driver, error) {
	a, err := newDriver(root, root, nil, nil)
	if err != nil {
		return nil, err
	}
	a.naiveDiff = graphdriver.NewNaiveDiffDriver(a, nil, nil)
	return a, nil
}

// newDriver is Init's backing file system detection on testdir (which sets
// the package's backingFs, shown by Status) and its Driver value.
func newDriver(root, testdir string, uidMaps, gidMaps []idtools.IDMap) (*Driver, error) {
	fsMagic, err := graphdriver.GetFSMagic(testdir)
	if err != nil {
		return nil, err
	}
	if fsName, ok := graphdriver.FsNames[fsMagic]; ok {
		backingFs = fsName
	}

	switch fsMagic {
	case graphdriver.FsMagicAufs, graphdriver.FsMagicBtrfs, graphdriver.FsMagicEcryptfs:
		logger.Errorf("AUFS is not supported over %s", backingFs)
		return nil, graphdriver.ErrIncompatibleFS
	}

	return &Driver{
		root:      root,
		uidMaps:   uidMaps,
		gidMaps:   gidMaps,
		pathCache: make(map[string]string),
		ctr:       graphdriver.NewRefCounter(graphdriver.NewFsChecker(graphdriver.FsMagicAufs)),
		locker:    locker.New(),
	}, nil
}
