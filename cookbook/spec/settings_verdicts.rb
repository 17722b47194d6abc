#!/usr/bin/env ruby
# The cookbook's verdict on each row of a settings parity table
# (fixtures/cookbook/settings.json, read from the file named or standard
# input): the recipe is compiled, as Chef compiles it, on a node with
# job_manager and the row's settings. Prints a JSON array of
# {"name", "verdict": "ok"|"refused", "message"}, one per row, in order.
#
#   ruby cookbook/spec/settings_verdicts.rb fixtures/cookbook/settings.json

require 'json'
require_relative 'chef_recorder'

rows = JSON.parse(ARGV.empty? ? $stdin.read : File.read(ARGV[0])).fetch('rows')
out = rows.map do |row|
  db = {}
  db['kind'] = row['kind'] if row.key?('kind')
  db['migrate_store2_to_store3'] = row['migrate'] if row.key?('migrate')
  jm = {}
  jm['postgres'] = { 'table' => row['table'] } if row.key?('table')
  jm['consul'] = { 'prefix' => row['prefix'] } if row.key?('prefix')
  attrs = { 'continuum' => { 'component_database' => db },
            'deployhook' => { 'components' => ['job_manager'], 'job_manager' => jm } }
  begin
    run = ChefRecorder::Run.new(attrs).compile
    run.resources # the resource's own checks run with its actions
    { 'name' => row['name'], 'verdict' => 'ok', 'message' => '' }
  rescue DeployhookCookbook::SettingsError => e
    { 'name' => row['name'], 'verdict' => 'refused', 'message' => e.message }
  end
end
puts JSON.pretty_generate(out)
