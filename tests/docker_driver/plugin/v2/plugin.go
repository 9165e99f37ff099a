// Package v2 stands in for Docker's plugin/v2, which Debian's
// golang-github-docker-docker-dev does not ship: daemon/graphdriver's
// plugin.go imports it for one type assertion (`pl.(*v2.Plugin)`, to read
// `PluginObj.Config.PropagatedMount` of a managed graph driver plugin). The
// assertion compiles only if *Plugin implements plugingetter.CompatPlugin,
// hence the methods. graph2aufs's tests use no plugins: nothing here runs.
package v2 // import "github.com/docker/docker/plugin/v2"

import (
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/pkg/plugins"
)

// Plugin is the managed plugin type graphdriver asserts.
type Plugin struct {
	PluginObj types.Plugin
}

// Name is the plugin's name.
func (p *Plugin) Name() string { return p.PluginObj.Name }

// ScopedPath is the path inside the plugin's root; unused here.
func (p *Plugin) ScopedPath(s string) string { return s }

// IsV1 is false: a managed plugin is a v2 one.
func (p *Plugin) IsV1() bool { return false }

// Client is the v1 client, which a managed plugin does not have.
func (p *Plugin) Client() *plugins.Client { return nil }
