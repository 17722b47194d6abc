# Everything the deployhook recipe declares is computed and checked here, in
# plain Ruby, before the recipe declares a single resource: a setting that is
# invalid fails the converge at compile time, so nothing is written and no
# command runs. The deployhook_migration resource (resources/migration.rb)
# computes its commands with the same functions. `deployhook run` applies the
# same setting rules again; the settings parity test
# (integration/hook/settings_test.go) requires both to give the same verdicts.
#
# Kept free of Chef classes (it reads the node with [] only) so that the spec
# and spec/render.rb evaluate it without Chef installed.

require 'digest'
require 'json'
require 'shellwords'

module DeployhookCookbook
  COMPONENTS = %w(job_manager package_manager auth_server).freeze
  KINDS      = %w(store2 store3).freeze
  SETTINGS   = 'chef.continuum.component_database'.freeze

  # Bumped when the meaning of the stamp changes, so that old stamps stop
  # matching and the next converge runs the commands again.
  STAMP_VERSION = 'deployhook-cookbook-stamp-1'.freeze

  # Environment variable names that hold secrets. Chef prints a failed
  # resource's properties, environment included, so they are refused; a name
  # ending in _FILE holds a path and is fine (CONSUL_HTTP_TOKEN_FILE).
  SECRET_NAME = /password|secret|token|private_key|access_key/i

  GO_DURATION_UNITS = {
    'ns' => 1e-9, 'us' => 1e-6, "\u00b5s" => 1e-6, "\u03bcs" => 1e-6,
    'ms' => 1e-3, 's' => 1, 'm' => 60, 'h' => 3600
  }.freeze

  # Raised for any setting the recipe refuses. The message names the attribute
  # (or the cluster.conf setting) and says what to set instead.
  class SettingsError < RuntimeError; end

  module_function

  # plan checks every node attribute and returns what the recipe declares:
  #   { conf_dir:, state_dir:, components: [ props, ... ] }
  # where props are the properties of one deployhook_migration: component:,
  # binary:, conf_dir:, state_dir:, kind:, migrate:, online:, wait:, timeout:,
  # hostname:, accept_empty_store3:, accept_store2_revert:, environment:,
  # postgres_url:, postgres_table:, consul_address:, consul_prefix:,
  # consul_token_file:, log_dir:. It raises SettingsError when a setting is
  # invalid, before the recipe declares anything.
  def plan(node)
    dh = node['deployhook'] || {}
    names = components(dh['components'])
    empty = { conf_dir: dh['conf_dir'], state_dir: dh['state_dir'], components: [] }
    return empty if names.empty?

    db = node['continuum'] && node['continuum']['component_database']
    kind, migrate = settings(db && db['kind'], db && db['migrate_store2_to_store3'])
    hostname = dh['hostname']
    unless hostname.nil? || (hostname.is_a?(String) && !hostname.empty?)
      raise SettingsError, "deployhook: node['deployhook']['hostname'] must be a non-empty string or nil"
    end
    base = {
      binary: path_attr(dh, 'binary'), conf_dir: path_attr(dh, 'conf_dir'), state_dir: path_attr(dh, 'state_dir'),
      kind: kind, migrate: migrate, online: bool_attr(dh, 'online'), wait: bool_attr(dh, 'wait'),
      timeout: dh['wait_timeout'], hostname: hostname,
      accept_empty_store3: bool_attr(dh, 'accept_empty_store3'),
      accept_store2_revert: bool_attr(dh, 'accept_store2_revert'),
      environment: environment(dh)
    }
    wait_seconds(base[:timeout], "node['deployhook']['wait_timeout']")
    comps = names.map do |name|
      props = base.merge(component: name).merge(conf_settings(dh, name))
      migration(props) # the resource's own checks, before any resource
      props
    end
    { conf_dir: base[:conf_dir], state_dir: base[:state_dir], components: comps }
  end

  # migration computes what one deployhook_migration does from its
  # properties (the keys plan lists):
  #   { conf_path:, variables: (the template's), run:, wait: (nil: no wait),
  #     wait_exec_timeout:, stamp_path:, stamp: (nil: delete the stamp),
  #     guard: (nil: no guard) }
  # It raises SettingsError for settings the resource refuses.
  def migration(p)
    name = p[:component]
    where = "deployhook_migration[#{name}]"
    kind, migrate = settings(p[:kind], p[:migrate], where)
    timeout_s = wait_seconds(p[:timeout], "#{where} timeout")
    if p[:postgres_url] && url_has_password?(p[:postgres_url])
      raise SettingsError, "deployhook: node['deployhook']['#{name}']['postgres']['url'] contains a password: remove " \
                           "it and put the password in a .pgpass file, named by node['deployhook']['pgpassfile'] (PGPASSFILE)"
    end
    conf = File.join(p[:conf_dir], "#{name}.conf")
    vars = {
      component: name, kind: kind, migrate: migrate,
      postgres_url: p[:postgres_url], postgres_table: p[:postgres_table],
      consul_address: p[:consul_address], consul_prefix: p[:consul_prefix],
      consul_token_file: p[:consul_token_file], log_dir: p[:log_dir]
    }
    flags = []
    flags += ['--hostname', p[:hostname]] if p[:hostname]
    flags << '--accept-empty-store3' if p[:accept_empty_store3]
    flags << '--accept-store2-revert' if p[:accept_store2_revert]
    flags << '--offline' if p[:online] == false
    migrating = migrates?(kind, migrate)
    run = shell([p[:binary], 'run', '-f', conf] + flags)
    # wait names the same host as run, so that it recognises this host's own
    # dead worker at once instead of after the lock's session TTL.
    wait_flags = p[:hostname] ? ['--hostname', p[:hostname]] : []
    wait = p[:wait] && migrating ? shell([p[:binary], 'wait', '-f', conf, '--timeout', p[:timeout]] + wait_flags) : nil
    stamp_path = File.join(p[:state_dir], "#{name}.stamp")
    # A migration started without wait may still fail in the background:
    # no stamp then, so the next converge calls run again.
    stamp = migrating && !p[:wait] ? nil : stamp(vars, run, wait, p[:environment] || {})
    {
      conf_path: conf, variables: vars, run: run, wait: wait, wait_exec_timeout: timeout_s.ceil + 120,
      stamp_path: stamp_path, stamp: stamp,
      guard: stamp && shell(['grep', '-qsxF', '--', stamp, stamp_path])
    }
  end

  # components returns the known components listed in the attribute, in the
  # fixed order job_manager, package_manager, auth_server.
  def components(list)
    list = [] if list.nil?
    unless list.respond_to?(:each) && !list.is_a?(String) && !list.is_a?(Hash)
      raise SettingsError, "deployhook: node['deployhook']['components'] must be a list, " \
                           "e.g. [\"job_manager\", \"package_manager\"]"
    end
    names = []
    list.each do |c|
      unless COMPONENTS.include?(c.to_s)
        raise SettingsError, "deployhook: unknown component #{c.inspect} in node['deployhook']['components']: " \
                             "use job_manager, package_manager or auth_server"
      end
      names << c.to_s
    end
    COMPONENTS.select { |c| names.include?(c) }
  end

  # settings checks the platform's two settings and returns [kind, migrate];
  # where names them in messages. It is the cookbook's copy of Go's
  # migrate.CheckSettings, which Chef needs before any resource: the settings
  # parity test runs both over fixtures/cookbook/settings.json.
  def settings(kind, migrate, where = SETTINGS)
    if kind.nil? || kind.to_s.empty?
      raise SettingsError, "deployhook: #{where}.kind is not set: set it to store2 or store3 in cluster.conf"
    end
    kind = kind.to_s if kind.is_a?(Symbol)
    unless KINDS.include?(kind)
      raise SettingsError, "deployhook: #{where}.kind is #{kind.inspect}, which is not a store kind: " \
                           'set it to store2 or store3 in cluster.conf'
    end
    migrate = false if migrate.nil?
    unless migrate == true || migrate == false
      raise SettingsError, "deployhook: #{where}.migrate_store2_to_store3 is #{migrate.inspect}: " \
                           'set it to true or false, unquoted'
    end
    if kind == 'store2' && migrate
      raise SettingsError, "deployhook: #{where} is invalid: kind store2 with migrate_store2_to_store3 true " \
                           '(components refuse to start): to migrate, set kind to store3; ' \
                           'to stay on store2, set migrate_store2_to_store3 to false'
    end
    [kind, migrate]
  end

  # migrates? is migrate.Migrates: checked settings that ask for the migration.
  def migrates?(kind, migrate)
    kind == 'store3' && migrate == true
  end

  # conf_settings reads a component's conf attributes; nil leaves a line out.
  def conf_settings(dh, name)
    c = dh[name] || {}
    pg = c['postgres'] || {}
    consul = c['consul'] || {}
    attr = "node['deployhook']['#{name}']"
    {
      postgres_url: opt_string(pg['url'], "#{attr}['postgres']['url']"),
      postgres_table: opt_string(pg['table'], "#{attr}['postgres']['table']"),
      consul_address: opt_string(consul['address'], "#{attr}['consul']['address']"),
      consul_prefix: opt_string(consul['prefix'], "#{attr}['consul']['prefix']"),
      consul_token_file: opt_string(consul['token_file'], "#{attr}['consul']['token_file']"),
      log_dir: opt_string(c['log_dir'], "#{attr}['log_dir']")
    }
  end

  # wait_seconds checks a wait timeout, a positive Go duration, and returns
  # it in seconds; what names the setting in the message.
  def wait_seconds(timeout, what)
    s = go_duration_seconds(timeout.to_s)
    if s.nil? || s <= 0
      raise SettingsError, "deployhook: #{what} is #{timeout.inspect}: " \
                           'set it to a positive Go duration such as "10m" or "1h30m"'
    end
    s
  end

  # url_has_password? spots a password in a URL's user info, in a
  # password= query parameter, or in a key=value connection string.
  def url_has_password?(url)
    return true if url =~ %r{\A[a-z][a-z0-9+.\-]*://[^/?#@]*:[^/?#@]*@}i
    return true if url =~ /[?&]password=/i
    url !~ %r{\A[a-z][a-z0-9+.\-]*://}i && url =~ /(\A|\s)password\s*=/i
  end

  def environment(dh)
    env = {}
    extra = dh['environment'] || {}
    unless extra.respond_to?(:each_pair)
      raise SettingsError, "deployhook: node['deployhook']['environment'] must be a map of variable names to strings"
    end
    extra.each_pair do |k, v|
      k = k.to_s
      if k =~ SECRET_NAME && k !~ /_FILE\z/i
        raise SettingsError, "deployhook: node['deployhook']['environment'] sets #{k}, a secret: Chef prints a " \
                             'failed resource\'s environment; use a .pgpass file (node[\'deployhook\'][\'pgpassfile\']) ' \
                             'or consul.token_file instead'
      end
      unless v.is_a?(String)
        raise SettingsError, "deployhook: node['deployhook']['environment']['#{k}'] must be a string"
      end
      env[k] = v
    end
    pgpass = opt_string(dh['pgpassfile'], "node['deployhook']['pgpassfile']")
    env['PGPASSFILE'] = pgpass if pgpass
    env
  end

  # stamp identifies everything the commands depend on; the guards skip the
  # commands while the stamp file holds exactly this line.
  def stamp(vars, run, wait, env)
    data = [STAMP_VERSION, vars.keys.map(&:to_s).sort.map { |k| [k, vars[k.to_sym]] }, run, wait, env.sort]
    Digest::SHA256.hexdigest(JSON.generate(data))
  end

  def shell(words)
    words.map { |w| Shellwords.escape(w.to_s) }.join(' ')
  end

  # go_duration_seconds parses a Go time.Duration string; nil if it is not one.
  def go_duration_seconds(s)
    return 0.0 if s == '0'
    units = GO_DURATION_UNITS.keys.sort_by { |u| -u.length }.map { |u| Regexp.escape(u) }.join('|')
    part = /(\d+(?:\.\d*)?|\.\d+)(#{units})/
    return nil unless s =~ /\A(?:#{part})+\z/
    s.scan(part).inject(0.0) { |sum, (n, u)| sum + n.to_f * GO_DURATION_UNITS[u] }
  end

  # dconf_string quotes s as a Dconf double-quoted string: the escapes are
  # \\ \" \n \t \r and \xHH for any other control byte.
  def dconf_string(s)
    out = '"'
    s.to_s.each_char do |ch|
      out << case ch
             when '\\' then '\\\\'
             when '"' then '\\"'
             when "\n" then '\\n'
             when "\t" then '\\t'
             when "\r" then '\\r'
             else
               ch.ord < 0x20 || ch.ord == 0x7f ? format('\\x%02X', ch.ord) : ch
             end
    end
    out << '"'
  end

  def path_attr(dh, key)
    v = dh[key]
    unless v.is_a?(String) && v.start_with?('/')
      raise SettingsError, "deployhook: node['deployhook']['#{key}'] is #{v.inspect}: set it to an absolute path"
    end
    v
  end

  def bool_attr(dh, key)
    v = dh[key]
    return v if v == true || v == false
    raise SettingsError, "deployhook: node['deployhook']['#{key}'] is #{v.inspect}: set it to true or false"
  end

  def opt_string(v, attr)
    return nil if v.nil?
    unless v.is_a?(String) && !v.empty?
      raise SettingsError, "deployhook: #{attr} must be a non-empty string, or nil to leave it out of the conf"
    end
    v
  end
end
