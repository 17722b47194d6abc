#!/usr/bin/env ruby
# Evaluates recipes/default.rb against the node attributes in a JSON file and
# prints what a Chef run would do, as JSON, for the Go integration tests.
# The contract is in cookbook/README.md, "render.rb contract".
#
#   ruby cookbook/spec/render.rb ATTRS.json     (ATTRS.json "-" is standard input)
#
# Exit codes: 0 rendered; 2 usage error or unreadable/invalid JSON;
# 3 the recipe refused the settings (stdout {"error": "..."}, message on stderr).

require 'json'
require_relative 'chef_recorder'

if ARGV.size != 1
  warn 'usage: render.rb ATTRS.json   (node attributes as JSON; "-" reads standard input)'
  exit 2
end

begin
  text = ARGV[0] == '-' ? $stdin.read : File.read(ARGV[0])
  attrs = JSON.parse(text)
  raise JSON::ParserError, 'top level must be an object' unless attrs.is_a?(Hash)
rescue SystemCallError, JSON::ParserError => e
  warn "render.rb: #{ARGV[0]}: #{e.message}"
  exit 2
end

run = ChefRecorder::Run.new(attrs)
begin
  run.compile
rescue DeployhookCookbook::SettingsError => e
  puts JSON.generate('error' => e.message)
  warn e.message
  exit 3
end

# Steps are the resources Chef converges, custom resources expanded; a guard
# on a custom resource itself would apply to all its steps at once, which
# the steps cannot say.
guarded = run.declared.find { |r| r.is_a?(ChefRecorder::CustomResource) && !r.guards.empty? }
if guarded
  warn "render.rb: #{guarded} has guards of its own: its steps cannot be listed one by one"
  exit 2
end

executes = run.resources.select { |r| r.type == :execute }
out = {
  'files' => run.templates.each_with_object({}) { |r, h| h[r.name] = run.render(r) },
  'commands' => run.commands,
  'environment' => executes.empty? ? {} : (executes.first.props['environment'] || {}),
  'directories' => run.resources.select { |r| r.type == :directory }.map(&:name),
  'stamps' => run.resources.select { |r| r.type == :file }.each_with_object({}) do |r, h|
    h[r.name] = r.action_name == 'delete' ? nil : r.props['content']
  end,
  'steps' => run.resources.map(&:to_h),
}
puts JSON.pretty_generate(out)
