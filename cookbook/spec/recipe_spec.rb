# Evaluates recipes/default.rb with the Chef DSL recorder and checks the
# rendered confs (whole text) and the exact commands, in order.
#
#   ruby cookbook/spec/recipe_spec.rb

require 'minitest/autorun'
require 'json'
require 'open3'
require 'tmpdir'
require_relative 'chef_recorder'
ChefRecorder.load_libraries

BIN = '/opt/apcera/deployhook/bin/deployhook'.freeze

def db(kind, migrate = nil)
  h = { 'kind' => kind }
  h['migrate_store2_to_store3'] = migrate unless migrate.nil?
  { 'continuum' => { 'component_database' => h } }
end

def attrs(kind, migrate, deployhook)
  ChefRecorder.deep_merge(db(kind, migrate), 'deployhook' => deployhook)
end

def compile(a)
  ChefRecorder::Run.new(a).compile
end

# conf renders the component conf the way the template must, for golden text.
def conf(component, kind, migrate, postgres, consul, log_dir)
  lines = [
    '# deployhook component conf, rendered by Chef (cookbook deployhook). Local',
    '# changes are overwritten at the next converge.',
    "component: #{component}",
    'db: {',
    "  kind: #{kind}",
    "  migrate_store2_to_store3: #{migrate}",
  ]
  lines += ['  postgres: {'] + postgres.map { |l| "    #{l}" } + ['  }'] unless postgres.empty?
  lines += ['  consul: {'] + consul.map { |l| "    #{l}" } + ['  }'] unless consul.empty?
  lines << '}'
  lines << "log_dir: #{log_dir}" if log_dir
  lines.join("\n") + "\n"
end

def default_log(component)
  "\"/var/log/continuum-#{component.tr('_', '-')}-migration\""
end

class RecipeSpec < Minitest::Test
  ALL = %w(job_manager package_manager auth_server).freeze

  def assert_refused(a, *fragments)
    run = ChefRecorder::Run.new(a)
    err = assert_raises(DeployhookCookbook::SettingsError) { run.compile }
    assert_empty run.resources, 'no resource may be declared before the settings are checked'
    fragments.each { |f| assert_includes err.message, f }
    err
  end

  def guard(run, name)
    run.resources.find { |r| r.name == "deployhook run #{name}" }.guards
  end

  def test_store2_renders_conf_and_calls_run_only
    run = compile(attrs('store2', nil, 'components' => ['job_manager']))
    assert_equal [[:directory, '/etc/deployhook'], [:directory, '/var/lib/deployhook'],
                  [:template, '/etc/deployhook/job_manager.conf'], [:execute, 'deployhook run job_manager'],
                  [:file, '/var/lib/deployhook/job_manager.stamp']],
                 run.resources.map { |r| [r.type, r.name] }
    assert_equal ["#{BIN} run -f /etc/deployhook/job_manager.conf"], run.commands
    assert_equal conf('job_manager', 'store2', false, ['table: "store2_records"'],
                      ['prefix: "apcera/store3/jmdb/"'], default_log('job_manager')),
                 run.render(run.templates[0])
    t = run.templates[0].props
    assert_equal ['component.conf.erb', '0640', 'root', 'root'], t.values_at('source', 'mode', 'owner', 'group')
  end

  def test_store3_without_migrate_calls_run_only
    run = compile(attrs('store3', false, 'components' => ALL))
    assert_equal ALL.map { |c| "#{BIN} run -f /etc/deployhook/#{c}.conf" }, run.commands
    assert_equal conf('auth_server', 'store3', false, ['table: "store2_records"'],
                      ['prefix: "apcera/store3/asdb/"'], default_log('auth_server')),
                 run.render(run.templates[2])
  end

  def test_store3_migrate_all_components_full_settings
    dh = { 'components' => %w(auth_server package_manager job_manager), 'pgpassfile' => '/etc/deployhook/pgpass' }
    { 'job_manager' => %w(jm 10.0.0.5), 'package_manager' => %w(pm 10.0.0.6), 'auth_server' => %w(as 10.0.0.7) }
      .each do |c, (short, host)|
      dh[c] = { 'postgres' => { 'url' => "postgres://#{short}@#{host}:5432/#{short}db?sslmode=require" },
                'consul' => { 'address' => '127.0.0.1:8500', 'token_file' => '/etc/deployhook/consul.token' } }
    end
    run = compile(attrs('store3', true, dh))

    assert_equal ALL.map { |c| "#{BIN} run -f /etc/deployhook/#{c}.conf" } +
                 ALL.map { |c| "#{BIN} wait -f /etc/deployhook/#{c}.conf --timeout 10m" },
                 run.commands
    assert_equal ['directory /etc/deployhook', 'directory /var/lib/deployhook',
                  'template /etc/deployhook/job_manager.conf', 'execute deployhook run job_manager',
                  'template /etc/deployhook/package_manager.conf', 'execute deployhook run package_manager',
                  'template /etc/deployhook/auth_server.conf', 'execute deployhook run auth_server',
                  'execute deployhook wait job_manager', 'file /var/lib/deployhook/job_manager.stamp',
                  'execute deployhook wait package_manager', 'file /var/lib/deployhook/package_manager.stamp',
                  'execute deployhook wait auth_server', 'file /var/lib/deployhook/auth_server.stamp'],
                 run.resources.map { |r| "#{r.type} #{r.name}" }

    assert_equal <<'CONF', run.render(run.templates[0])
# deployhook component conf, rendered by Chef (cookbook deployhook). Local
# changes are overwritten at the next converge.
component: job_manager
db: {
  kind: store3
  migrate_store2_to_store3: true
  postgres: {
    url: "postgres://jm@10.0.0.5:5432/jmdb?sslmode=require"
    table: "store2_records"
  }
  consul: {
    address: "127.0.0.1:8500"
    prefix: "apcera/store3/jmdb/"
    token_file: "/etc/deployhook/consul.token"
  }
}
log_dir: "/var/log/continuum-job-manager-migration"
CONF
    assert_equal conf('package_manager', 'store3', true,
                      ['url: "postgres://pm@10.0.0.6:5432/pmdb?sslmode=require"', 'table: "store2_records"'],
                      ['address: "127.0.0.1:8500"', 'prefix: "apcera/store3/pmdb/"',
                       'token_file: "/etc/deployhook/consul.token"'],
                      default_log('package_manager')),
                 run.render(run.templates[1])

    executes = run.resources.select { |r| r.type == :execute }
    executes.each { |r| assert_equal({ 'PGPASSFILE' => '/etc/deployhook/pgpass' }, r.props['environment']) }
    waits = executes.select { |r| r.name.start_with?('deployhook wait') }
    waits.each { |r| assert_equal 720, r.props['timeout'] }

    # run and wait of a component share one guard, on that component's stamp,
    # and the stamp file holds exactly the guarded line.
    ALL.each do |c|
      stamp = run.resources.find { |r| r.name == "/var/lib/deployhook/#{c}.stamp" }
      line = stamp.props['content'].chomp
      assert_match(/\A\h{64}\z/, line)
      want = [[:not_if, "grep -qsxF -- #{line} /var/lib/deployhook/#{c}.stamp"]]
      assert_equal want, guard(run, c)
      assert_equal want, run.resources.find { |r| r.name == "deployhook wait #{c}" }.guards
    end
    refute_equal guard(run, 'job_manager'), guard(run, 'package_manager')
    # Nothing secret in commands or confs: no password anywhere.
    text = run.commands.join("\n") + run.templates.map { |t| run.render(t) }.join
    refute_match(/password|:[^@\/]*@/i, text.gsub('127.0.0.1:8500', ''))
  end

  def test_store2_with_migrate_is_refused_before_any_resource
    assert_refused(attrs('store2', true, 'components' => ['job_manager']),
                   'kind store2 with migrate_store2_to_store3 true', 'set kind to store3',
                   'set migrate_store2_to_store3 to false')
  end

  def test_unknown_or_missing_kind_is_refused
    assert_refused(attrs('store4', false, 'components' => ['job_manager']),
                   'kind is "store4"', 'set it to store2 or store3')
    assert_refused(attrs('STORE3', true, 'components' => ['job_manager']), 'set it to store2 or store3')
    assert_refused({ 'deployhook' => { 'components' => ['auth_server'] } },
                   'kind is not set', 'set it to store2 or store3 in cluster.conf')
  end

  def test_migrate_must_be_a_boolean
    assert_refused(attrs('store3', 'true', 'components' => ['job_manager']),
                   'migrate_store2_to_store3 is "true"', 'set it to true or false, unquoted')
  end

  def test_symbol_kind_from_ruby_attributes_is_accepted
    run = compile(attrs(:store3, true, 'components' => ['job_manager']))
    assert_includes run.render(run.templates[0]), "  kind: store3\n"
  end

  def test_only_package_manager_on_the_node
    run = compile(attrs('store3', true, 'components' => ['package_manager']))
    assert_equal ['/etc/deployhook/package_manager.conf'], run.templates.map(&:name)
    assert_equal ["#{BIN} run -f /etc/deployhook/package_manager.conf",
                  "#{BIN} wait -f /etc/deployhook/package_manager.conf --timeout 10m"], run.commands
    assert_equal conf('package_manager', 'store3', true, ['table: "store2_records"'],
                      ['prefix: "apcera/store3/pmdb/"'], default_log('package_manager')),
                 run.render(run.templates[0])
  end

  def test_no_component_on_the_node_declares_nothing_and_checks_nothing
    assert_empty compile({}).resources
    assert_empty compile(db('store2', true)).resources
  end

  def test_unknown_component_is_refused
    assert_refused(attrs('store3', true, 'components' => %w(job_manager router)),
                   'unknown component "router"', 'use job_manager, package_manager or auth_server')
  end

  def test_wait_false_calls_run_and_drops_the_stamp
    run = compile(attrs('store3', true, 'components' => ['job_manager'], 'wait' => false))
    assert_equal ["#{BIN} run -f /etc/deployhook/job_manager.conf"], run.commands
    assert_empty guard(run, 'job_manager'), 'a migration nobody waited for may fail: run again next converge'
    stamp = run.resources.last
    assert_equal [:file, '/var/lib/deployhook/job_manager.stamp', 'delete'], [stamp.type, stamp.name, stamp.action_name]
  end

  def test_wait_false_keeps_the_guard_when_nothing_migrates
    run = compile(attrs('store2', false, 'components' => ['job_manager'], 'wait' => false))
    assert_equal 1, guard(run, 'job_manager').size
    assert_equal 'create', run.resources.last.action_name
  end

  def test_risk_flags_and_hostname
    run = compile(attrs('store3', false, 'components' => ['auth_server'], 'hostname' => 'central-2',
                                         'accept_empty_store3' => true, 'accept_store2_revert' => true))
    assert_equal ["#{BIN} run -f /etc/deployhook/auth_server.conf --hostname central-2 " \
                  '--accept-empty-store3 --accept-store2-revert'], run.commands
    run = compile(attrs('store2', false, 'components' => ['auth_server'], 'accept_store2_revert' => true))
    assert_equal ["#{BIN} run -f /etc/deployhook/auth_server.conf --accept-store2-revert"], run.commands
  end

  def test_risk_flags_change_the_stamp
    plain = compile(attrs('store3', false, 'components' => ['job_manager']))
    risky = compile(attrs('store3', false, 'components' => ['job_manager'], 'accept_empty_store3' => true))
    refute_equal guard(plain, 'job_manager'), guard(risky, 'job_manager')
  end

  def test_paths_are_shell_quoted_and_dconf_quoted
    run = compile(attrs('store3', true, 'components' => ['job_manager'],
                                        'binary' => '/opt/deploy hook/bin/deployhook',
                                        'conf_dir' => "/etc/it's here", 'wait_timeout' => '1h30m',
                                        'job_manager' => { 'consul' => { 'prefix' => "a/b\"c\\d\t/" },
                                                           'log_dir' => '/var/log/x y' }))
    assert_equal ["/opt/deploy\\ hook/bin/deployhook run -f /etc/it\\'s\\ here/job_manager.conf",
                  "/opt/deploy\\ hook/bin/deployhook wait -f /etc/it\\'s\\ here/job_manager.conf --timeout 1h30m"],
                 run.commands
    assert_equal 5520, run.resources.find { |r| r.name == 'deployhook wait job_manager' }.props['timeout']
    text = run.render(run.templates[0])
    assert_includes text, %(    prefix: "a/b\\"c\\\\d\\t/"\n)
    assert_includes text, %(log_dir: "/var/log/x y"\n)
    assert_equal ["/etc/it's here/job_manager.conf"], run.templates.map(&:name)
  end

  def test_nil_settings_leave_their_lines_out
    run = compile(attrs('store3', true, 'components' => ['job_manager'],
                                        'job_manager' => { 'postgres' => { 'table' => nil },
                                                           'consul' => { 'prefix' => nil }, 'log_dir' => nil }))
    assert_equal conf('job_manager', 'store3', true, [], [], nil), run.render(run.templates[0])
  end

  def test_control_characters_are_escaped
    assert_equal '"a\\x01b\\nc\\x7F"', DeployhookCookbook.dconf_string("a\u0001b\nc\u007f")
    assert_equal '"é"', DeployhookCookbook.dconf_string('é')
  end

  def test_postgres_password_is_refused_without_echoing_it
    ['postgres://jm:s3cret@10.0.0.5/jmdb', 'postgres://jm@10.0.0.5/jmdb?password=s3cret',
     'host=10.0.0.5 user=jm password=s3cret'].each do |url|
      err = assert_refused(attrs('store3', true, 'components' => ['job_manager'],
                                                 'job_manager' => { 'postgres' => { 'url' => url } }),
                           "node['deployhook']['job_manager']['postgres']['url'] contains a password", '.pgpass')
      refute_includes err.message, 's3cret'
    end
    # a user with no password, and an @ in the path or query, are fine
    compile(attrs('store3', true, 'components' => ['job_manager'],
                                  'job_manager' => { 'postgres' => { 'url' => 'postgres://jm@h:5432/jmdb?application_name=a:b' } }))
  end

  def test_secret_environment_is_refused
    %w(PGPASSWORD CONSUL_HTTP_TOKEN).each do |k|
      err = assert_refused(attrs('store3', true, 'components' => ['job_manager'], 'environment' => { k => 'x' }),
                           "sets #{k}, a secret")
      refute_includes err.message, "'x'"
    end
    run = compile(attrs('store3', true, 'components' => ['job_manager'],
                                        'environment' => { 'CONSUL_HTTP_TOKEN_FILE' => '/etc/t', 'CONSUL_CACERT' => '/ca' }))
    assert_equal({ 'CONSUL_HTTP_TOKEN_FILE' => '/etc/t', 'CONSUL_CACERT' => '/ca' },
                 run.resources.find { |r| r.type == :execute }.props['environment'])
  end

  def test_invalid_node_attributes_are_refused
    base = attrs('store3', true, 'components' => ['job_manager'])
    [
      [{ 'wait_timeout' => '10' }, "node['deployhook']['wait_timeout'] is \"10\""],
      [{ 'wait_timeout' => '0s' }, 'positive Go duration'],
      [{ 'wait' => 'yes' }, "node['deployhook']['wait'] is \"yes\": set it to true or false"],
      [{ 'binary' => 'deployhook' }, "node['deployhook']['binary'] is \"deployhook\": set it to an absolute path"],
      [{ 'components' => 'job_manager' }, "node['deployhook']['components'] must be a list"],
      [{ 'job_manager' => { 'consul' => { 'prefix' => '' } } }, "['consul']['prefix'] must be a non-empty string"],
    ].each do |extra, msg|
      assert_refused(ChefRecorder.deep_merge(base, 'deployhook' => extra), msg)
    end
  end

  def test_go_durations
    { '10m' => 600, '1h30m' => 5400, '90s' => 90, '1.5h' => 5400, '500ms' => 0.5, '0' => 0 }.each do |s, want|
      assert_in_delta want, DeployhookCookbook.go_duration_seconds(s), 1e-9, s
    end
    ['', '10', 'm', '10 m', '-1m', '1d'].each { |s| assert_nil DeployhookCookbook.go_duration_seconds(s), s }
  end

  # A converge on this machine, with the commands faked: the first converge
  # runs them, a second does nothing, a changed setting runs them again, and a
  # failed wait leaves no stamp so the next converge tries again.
  def test_guards_across_converges
    Dir.mktmpdir do |dir|
      node = lambda do |kind, migrate|
        attrs(kind, migrate, 'components' => %w(job_manager auth_server),
                             'conf_dir' => "#{dir}/etc", 'state_dir' => "#{dir}/state", 'binary' => '/bin/dh')
      end
      ok = ->(_) { true }
      all = ["/bin/dh run -f #{dir}/etc/job_manager.conf", "/bin/dh run -f #{dir}/etc/auth_server.conf",
             "/bin/dh wait -f #{dir}/etc/job_manager.conf --timeout 10m",
             "/bin/dh wait -f #{dir}/etc/auth_server.conf --timeout 10m"]

      assert_equal all, compile(node.call('store3', true)).converge(&ok)
      assert_equal File.read("#{dir}/etc/job_manager.conf"),
                   compile(node.call('store3', true)).render(compile(node.call('store3', true)).templates[0])
      assert_empty compile(node.call('store3', true)).converge(&ok), 'second converge must do no work'

      # a stamp that does not match (edited, or older settings) runs again
      File.write("#{dir}/state/auth_server.stamp", "0\n")
      assert_equal [all[1], all[3]], compile(node.call('store3', true)).converge(&ok)

      # the wait of job_manager fails: the converge fails, job_manager keeps no stamp
      FileUtils.rm_f(Dir["#{dir}/state/*"])
      failing = ->(r) { r.name != 'deployhook wait job_manager' }
      assert_raises(ChefRecorder::ConvergeFailed) { compile(node.call('store3', true)).converge(&failing) }
      refute File.exist?("#{dir}/state/job_manager.stamp")
      refute File.exist?("#{dir}/state/auth_server.stamp"), 'nothing after the failed resource runs'
      assert_equal all, compile(node.call('store3', true)).converge(&ok)

      # back to store2 (say, the operator reverts): new conf, run is called again
      assert_equal all[0, 2], compile(node.call('store2', false)).converge(&ok)
      assert_includes File.read("#{dir}/etc/job_manager.conf"), "  kind: store2\n"
      assert_empty compile(node.call('store2', false)).converge(&ok)
    end
  end

  def test_render_script_contract
    script = File.join(__dir__, 'render.rb')
    Dir.mktmpdir do |dir|
      path = File.join(dir, 'attrs.json')
      File.write(path, JSON.generate(attrs('store3', true, 'components' => ['job_manager'],
                                                           'pgpassfile' => '/etc/deployhook/pgpass')))
      out, err, st = Open3.capture3('ruby', script, path)
      assert st.success?, err
      got = JSON.parse(out)
      assert_equal %w(files commands environment directories stamps steps), got.keys
      assert_equal ["#{BIN} run -f /etc/deployhook/job_manager.conf",
                    "#{BIN} wait -f /etc/deployhook/job_manager.conf --timeout 10m"], got['commands']
      assert_equal({ '/etc/deployhook/job_manager.conf' =>
                     conf('job_manager', 'store3', true, ['table: "store2_records"'],
                          ['prefix: "apcera/store3/jmdb/"'], default_log('job_manager')) }, got['files'])
      assert_equal({ 'PGPASSFILE' => '/etc/deployhook/pgpass' }, got['environment'])
      assert_equal ['/etc/deployhook', '/var/lib/deployhook'], got['directories']
      assert_match(/\A\h{64}\n\z/, got['stamps']['/var/lib/deployhook/job_manager.stamp'])
      assert_equal %w(directory directory template execute execute file), got['steps'].map { |s| s['type'] }

      out, err, st = Open3.capture3('ruby', script, '-', stdin_data: JSON.generate(attrs('store2', true, 'components' => ['job_manager'])))
      assert_equal 3, st.exitstatus
      assert_includes JSON.parse(out)['error'], 'set kind to store3'
      assert_includes err, 'set kind to store3'

      _, _, st = Open3.capture3('ruby', script, '-', stdin_data: '{not json')
      assert_equal 2, st.exitstatus
      _, _, st = Open3.capture3('ruby', script)
      assert_equal 2, st.exitstatus
    end
  end

  # A recipe of the test's own over the cookbook's deployhook_migration.
  def recipe(text, attrs = {})
    ChefRecorder::Run.new(attrs).load_cookbook.eval_recipe(text)
  end

  def migration(props = "kind 'store3'\n  migrate true", act = '[:run, :wait]')
    recipe("deployhook_migration 'job_manager' do\n  #{props}\n  action #{act}\nend\n")
  end

  def test_metadata_needs_no_respond_to
    text = File.read(File.join(ChefRecorder::ROOT, 'metadata.rb'))
    refute_includes text, 'respond_to?', "cookstyle's Chef/Modernize/RespondToInMetadata"
    md = ChefRecorder.metadata
    assert_equal 'deployhook', md['name']
    assert_equal '>= 15.3', md['chef_version'], 'unified_mode custom resources need Chef 15.3'
  end

  def test_recipe_declares_deployhook_migration_runs_before_waits
    run = compile(attrs('store3', true, 'components' => %w(auth_server job_manager)))
    assert_equal [[:directory, '/etc/deployhook', nil], [:directory, '/var/lib/deployhook', nil],
                  [:deployhook_migration, 'job_manager', [:run]], [:deployhook_migration, 'auth_server', [:run]],
                  [:deployhook_migration, 'job_manager', [:wait]], [:deployhook_migration, 'auth_server', [:wait]]],
                 run.declared.map { |r| [r.type, r.name, r.respond_to?(:actions) ? r.actions : nil] }
    jm = run.declared[2]
    assert_equal ['store3', true, true, true, '10m', nil, 'store2_records', 'apcera/store3/jmdb/'],
                 [jm.kind, jm.migrate, jm.online, jm.wait, jm.timeout, jm.hostname, jm.postgres_table, jm.consul_prefix]
  end

  def test_wait_streams_its_output_to_the_chef_log
    run = compile(attrs('store3', true, 'components' => ALL))
    waits = run.resources.select { |r| r.name.start_with?('deployhook wait') }
    assert_equal 3, waits.size
    waits.each { |r| assert_equal true, r.props['live_stream'], r.name }
    run.resources.select { |r| r.name.start_with?('deployhook run') }.each { |r| assert_nil r.props['live_stream'] }
  end

  def test_online_false_runs_offline
    online = compile(attrs('store3', true, 'components' => ['job_manager']))
    offline = compile(attrs('store3', true, 'components' => ['job_manager'], 'online' => false))
    assert_equal "#{BIN} run -f /etc/deployhook/job_manager.conf", online.commands[0]
    assert_equal ["#{BIN} run -f /etc/deployhook/job_manager.conf --offline",
                  "#{BIN} wait -f /etc/deployhook/job_manager.conf --timeout 10m"], offline.commands
    refute_equal guard(online, 'job_manager'), guard(offline, 'job_manager'), 'a changed flag runs again'
    assert_refused(attrs('store3', true, 'components' => ['job_manager'], 'online' => 'no'),
                   "node['deployhook']['online'] is \"no\": set it to true or false")
    run = migration("kind 'store3'\n  migrate true\n  online false\n  hostname 'central-2'")
    assert_equal "#{BIN} run -f /etc/deployhook/job_manager.conf --hostname central-2 --offline", run.commands[0]
    # wait names the same host, to recognise this host's dead worker at once
    assert_equal "#{BIN} wait -f /etc/deployhook/job_manager.conf --timeout 10m --hostname central-2", run.commands[1]
  end

  # The resource on its own, as a wrapper cookbook would declare it.
  def test_resource_actions
    run = migration
    assert_equal [[:template, '/etc/deployhook/job_manager.conf', 'create'],
                  [:execute, 'deployhook run job_manager', 'run'],
                  [:execute, 'deployhook wait job_manager', 'run'],
                  [:file, '/var/lib/deployhook/job_manager.stamp', 'create']],
                 run.resources.map { |r| [r.type, r.name, r.action_name] }
    wait = run.resources[2]
    assert_equal ["#{BIN} wait -f /etc/deployhook/job_manager.conf --timeout 10m", 720, true],
                 wait.props.values_at('command', 'timeout', 'live_stream')
    assert_equal 'deployhook', run.resources[0].props['cookbook']
    assert_equal conf('job_manager', 'store3', true, ['table: "store2_records"'], [], nil),
                 run.render(run.resources[0])

    only_run = migration("kind 'store3'\n  migrate true", ':run')
    assert_equal %i(template execute), only_run.resources.map(&:type)
    assert_equal migration("kind 'store3'", ':run').resources.map(&:type),
                 recipe("deployhook_migration 'job_manager' do\n  kind 'store3'\nend\n").resources.map(&:type),
                 ':run is the default action'

    # :wait without a migration only writes the stamp; without wait, a
    # migration leaves no stamp behind and no guard on run.
    assert_equal [%i(file create)], migration("kind 'store3'", ':wait').resources.map { |r| [r.type, r.action_name.to_sym] }
    nowait = migration("kind 'store3'\n  migrate true\n  wait false")
    assert_equal [%i(template create), %i(execute run), %i(file delete)],
                 nowait.resources.map { |r| [r.type, r.action_name.to_sym] }
    assert_empty nowait.resources[1].guards
  end

  # The guards: run and wait skip while the stamp holds this exact setting,
  # and a changed property changes the stamp.
  def test_resource_guards
    run = migration
    stamp = run.resources[3].props['content'].chomp
    want = [[:not_if, "grep -qsxF -- #{stamp} /var/lib/deployhook/job_manager.stamp"]]
    assert_equal want, run.resources[1].guards
    assert_equal want, run.resources[2].guards
    %W(timeout\ '1h' accept_empty_store3\ true postgres_table\ 'public.records' environment('X'\ =>\ 'y')).each do |prop|
      other = migration("kind 'store3'\n  migrate true\n  #{prop}")
      refute_equal stamp, other.resources.last.props['content'].chomp, prop
    end
    # The recipe and the resource compute one stamp for the same settings.
    recipe_run = compile(attrs('store3', true, 'components' => ['job_manager']))
    same = migration("kind 'store3'\n  migrate true\n  consul_prefix 'apcera/store3/jmdb/'\n  " \
                     "log_dir '/var/log/continuum-job-manager-migration'")
    assert_equal same.resources[1].guards, guard(recipe_run, 'job_manager')
  end

  # A guard on the resource itself skips it whole at converge.
  def test_resource_level_guard_skips_every_step
    Dir.mktmpdir do |dir|
      props = "kind 'store3'\n  migrate true\n  conf_dir '#{dir}/etc'\n  state_dir '#{dir}/state'"
      run = migration("#{props}\n  only_if 'false'")
      assert_empty run.converge { true }
      refute File.exist?("#{dir}/etc/job_manager.conf")
      FileUtils.mkdir_p(["#{dir}/etc", "#{dir}/state"])
      run = migration("#{props}\n  not_if 'false'")
      assert_equal 2, run.converge { true }.size
      assert File.exist?("#{dir}/state/job_manager.stamp")
    end
  end

  def test_resource_validates_its_properties
    assert_raises(ChefRecorder::ValidationFailed) { migration("kind 'store3'\n  migrate 'yes'") }
    assert_raises(ChefRecorder::ValidationFailed) { migration("kind 'Store3'") }
    assert_raises(ChefRecorder::ValidationFailed) { migration("kind 'store3'\n  environment 'X=y'") }
    assert_raises(NoMethodError) { migration("kind 'store3'\n  migrate_store2_to_store3 true") }
    assert_raises(ArgumentError) { migration("kind 'store3'", ':start') }
    err = assert_raises(ChefRecorder::ValidationFailed) { migration("migrate false").resources }
    assert_includes err.message, 'required property kind'
    err = assert_raises(ChefRecorder::ValidationFailed) do
      recipe("deployhook_migration 'router' do\n  kind 'store3'\nend\n").resources
    end
    assert_includes err.message, 'component'
    # The settings rule and the timeout are the library's, checked when the
    # action runs.
    err = assert_raises(DeployhookCookbook::SettingsError) { migration("kind 'store2'\n  migrate true").resources }
    assert_includes err.message, 'deployhook_migration[job_manager] is invalid: kind store2 with migrate_store2_to_store3 true'
    err = assert_raises(DeployhookCookbook::SettingsError) { migration("kind 'store3'\n  timeout '10'").resources }
    assert_includes err.message, 'deployhook_migration[job_manager] timeout is "10"'
  end

  def test_readme_sets_attributes_at_role_or_environment_precedence
    text = File.read(File.join(ChefRecorder::ROOT, 'README.md'))
    refute text =~ /\bnormal\[|\bnormal_attributes|\bnode\.normal/, "README.md advises normal attributes: #{$~}"
    assert_includes text, 'default_attributes'
  end
end
