// The meshc translation written in Jsonnet, as a platform team would write it without meshc: it
// takes the mesh spec (mesh.yaml as JSON) and produces, per deployed service, the Envoy bootstrap,
// CDS and LDS documents and the Kubernetes objects, plus the Namespace and the kustomization. The
// structure mirrors `meshc build` field for field (docs/performance.md says where it differs).
//
//   jsonnet --tla-code-file mesh=mesh.json bench/baselines/mesh.jsonnet
//
// Result: {"<relative path>": "<file content>"}: the same paths and the same kind of text as a meshc
// output directory (indented JSON with sorted keys, `---` between the documents of a stream).
function(mesh)
  local spec = mesh.spec;
  local get(o, k, d=null) = if o != null && std.objectHas(o, k) && o[k] != null then o[k] else d;
  local D = get(spec, 'defaults', {});
  local proxyIn = get(spec, 'proxy', {});
  local name = mesh.metadata.name;
  local ns = get(spec, 'namespace', name);
  local prefix = get(get(spec, 'etcd', {}), 'prefix', '/meshc/' + name);
  local proxy = {
    image: get(proxyIn, 'image', 'envoyproxy/envoy:v1.32.1'),
    adminPort: get(proxyIn, 'adminPort', 9901),
    inboundPort: get(proxyIn, 'inboundPort', 15006),
    statsPort: get(proxyIn, 'statsPort', 15090),
    accessLog: get(proxyIn, 'accessLog', 'json'),
    resources: get(proxyIn, 'resources', null),
  };
  local configDir = '/etc/envoy';

  // --- durations and hashes -------------------------------------------------------------------
  local ms(text) =
    if std.endsWith(text, 'ms') then std.parseInt(std.substr(text, 0, std.length(text) - 2))
    else
      local unit = text[std.length(text) - 1];
      local n = std.parseInt(std.substr(text, 0, std.length(text) - 1));
      n * { s: 1000, m: 60000, h: 3600000 }[unit];
  local msOr(text, d) = if text == null then d else ms(text);
  local duration(millis) =
    local s = std.floor(millis / 1000), rest = millis % 1000;
    if rest == 0 then '%ds' % s else '%d.%03ds' % [s, rest];
  local fmt(millis) =
    if millis % 3600000 == 0 then '%dh' % (millis / 3600000)
    else if millis % 60000 == 0 then '%dm' % (millis / 60000)
    else if millis % 1000 == 0 then '%ds' % (millis / 1000)
    else '%dms' % millis;
  local hash(doc) = std.substr(std.md5(std.manifestJsonMinified(doc)), 0, 16);
  local pretty(doc) = std.manifestJsonEx(doc, '  ') + '\n';

  // --- constants (meshc.emit.envoy.values, meshc.defaults) ------------------------------------
  local CLUSTER_TYPE = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
  local LISTENER_TYPE = 'type.googleapis.com/envoy.config.listener.v3.Listener';
  local HCM = 'envoy.filters.network.http_connection_manager';
  local HCM_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
  local TCP_PROXY = 'envoy.filters.network.tcp_proxy';
  local TCP_PROXY_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';
  local ROUTER = { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } };
  local H2_OPTIONS = {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      explicit_http_config: { http2_protocol_options: {} },
    },
  };
  local H2 = { http2: true, grpc: true };
  local LB = { random: 'RANDOM', round_robin: 'ROUND_ROBIN', weighted: 'ROUND_ROBIN', least_request: 'LEAST_REQUEST', ring_hash: 'RING_HASH', maglev: 'MAGLEV' };
  local RETRY_ON = ['connect-failure', 'refused-stream', 'unavailable', 'cancelled'];
  local HTTP_LOG_FORMAT = {
    start_time: '%START_TIME%', method: '%REQ(:METHOD)%', path: '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%',
    protocol: '%PROTOCOL%', authority: '%REQ(:AUTHORITY)%', response_code: '%RESPONSE_CODE%',
    response_flags: '%RESPONSE_FLAGS%', bytes_received: '%BYTES_RECEIVED%', bytes_sent: '%BYTES_SENT%',
    duration_ms: '%DURATION%', upstream_service_time: '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%',
    upstream_cluster: '%UPSTREAM_CLUSTER%', upstream_host: '%UPSTREAM_HOST%',
    downstream_remote_address: '%DOWNSTREAM_REMOTE_ADDRESS%', request_id: '%REQ(X-REQUEST-ID)%',
    user_agent: '%REQ(USER-AGENT)%', attempt_count: '%UPSTREAM_REQUEST_ATTEMPT_COUNT%',
  };
  local TCP_LOG_FORMAT = {
    start_time: '%START_TIME%', response_flags: '%RESPONSE_FLAGS%', bytes_received: '%BYTES_RECEIVED%',
    bytes_sent: '%BYTES_SENT%', duration_ms: '%DURATION%', upstream_cluster: '%UPSTREAM_CLUSTER%',
    upstream_host: '%UPSTREAM_HOST%', downstream_remote_address: '%DOWNSTREAM_REMOTE_ADDRESS%',
  };
  local accessLogs(tcp) =
    if proxy.accessLog == 'off' then []
    else [{
      name: 'envoy.access_loggers.stdout',
      typed_config: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog' }
                    + (if proxy.accessLog == 'json' then { log_format: { json_format: if tcp then TCP_LOG_FORMAT else HTTP_LOG_FORMAT } } else {}),
    }];
  local httpLogs = accessLogs(false), tcpLogs = accessLogs(true);
  local socket(address, port) = { socket_address: { address: address, port_value: port } };

  // --- resolve: defaults and inheritance (meshc.resolve.resolver) -----------------------------
  local lbOf(s) =
    local lb = get(s, 'loadBalancer', get(D, 'loadBalancer', 'round_robin'));
    if std.isString(lb) then { policy: lb, hashOn: null } else { policy: lb.policy, hashOn: get(lb, 'hashOn') };
  local outlierOf(o) = if o == null then null else {
    consecutive5xx: get(o, 'consecutive5xx', 5), consecutiveGatewayFailure: get(o, 'consecutiveGatewayFailure'),
    interval: msOr(get(o, 'interval'), 10000), baseEjectionTime: msOr(get(o, 'baseEjectionTime'), 30000),
    maxEjectionPercent: get(o, 'maxEjectionPercent', 10),
  };
  local circuitOf(c) = if c == null then null else {
    maxConnections: get(c, 'maxConnections', 1024), maxPendingRequests: get(c, 'maxPendingRequests', 1024),
    maxRequests: get(c, 'maxRequests', 1024), maxRetries: get(c, 'maxRetries', 3),
  };
  local healthOf(h) = if h == null then null else {
    path: h.path, interval: msOr(get(h, 'interval'), 5000), timeout: msOr(get(h, 'timeout'), 1000),
    healthyThreshold: get(h, 'healthyThreshold', 2), unhealthyThreshold: get(h, 'unhealthyThreshold', 3),
  };
  local resourcesOf(own, inherited, base) =
    local pick(section, field) =
      local a = get(get(own, section), field), b = get(get(inherited, section), field);
      if a != null then std.toString(a) else if b != null then std.toString(b) else null;
    {
      cpuRequest: local v = pick('requests', 'cpu'); if v == null then base.cpuRequest else v,
      memoryRequest: local v = pick('requests', 'memory'); if v == null then base.memoryRequest else v,
      cpuLimit: local v = pick('limits', 'cpu'); if v == null then base.cpuLimit else v,
      memoryLimit: local v = pick('limits', 'memory'); if v == null then base.memoryLimit else v,
    };
  local APP_RESOURCES = { cpuRequest: '100m', memoryRequest: '128Mi', cpuLimit: '1', memoryLimit: '512Mi' };
  local PROXY_RESOURCES = { cpuRequest: '50m', memoryRequest: '64Mi', cpuLimit: '500m', memoryLimit: '256Mi' };

  local byName(list) = std.sort(list, function(x) x.name);
  local services = byName([
    local deployed = !std.objectHas(s, 'endpoints') || s.endpoints == null;
    local versions = get(s, 'versions', null);
    s {
      protocol: get(s, 'protocol', 'http'),
      deployed: deployed,
      lb: lbOf(s),
      connectTimeout: msOr(get(s, 'connectTimeout', get(D, 'connectTimeout')), 1000),
      outlier: outlierOf(get(s, 'outlierDetection', get(D, 'outlierDetection'))),
      circuit: circuitOf(get(s, 'circuitBreaker', get(D, 'circuitBreaker'))),
      health: healthOf(get(s, 'healthCheck')),
      endpointList: std.sort(get(s, 'endpoints', []), function(e) [e.address, e.port]),
      versionList:
        if !deployed then []
        else if versions == null then [{
          name: 'default', implicit: true, image: get(s, 'image', ''), replicas: get(s, 'replicas', 1), weight: 100,
          resources: resourcesOf(get(s, 'resources'), null, APP_RESOURCES),
        }]
        else byName([{
          name: v.name, implicit: false, image: get(v, 'image', get(s, 'image', '')),
          replicas: get(v, 'replicas', get(s, 'replicas', 1)), weight: get(v, 'weight', 100),
          resources: resourcesOf(get(v, 'resources'), get(s, 'resources'), APP_RESOURCES),
        } for v in versions]),
      upstreamList: std.sort(get(s, 'upstreams', []), function(u) [u.service, u.localPort]),
      envList: local env = get(s, 'env', {}); [[k, env[k]] for k in std.objectFields(env)],
    }
    for s in spec.services
  ]);
  local svc = { [s.name]: s for s in services };

  local retriesOf(own) =
    local inh = get(D, 'retries');
    local pick(field, d) = get(own, field, get(inh, field, d));
    local backoffOwn = get(own, 'backoff'), backoffInh = get(inh, 'backoff');
    local base = msOr(get(backoffOwn, 'baseInterval', get(backoffInh, 'baseInterval')), 25);
    local maxText = get(backoffOwn, 'maxInterval', get(backoffInh, 'maxInterval'));
    local maximum = if maxText == null then base * 10 else ms(maxText);
    {
      attempts: pick('attempts', 2),
      perTryTimeout: local p = pick('perTryTimeout', null); if p == null then null else ms(p),
      retryOn: pick('retryOn', RETRY_ON),
      backoff: { base: base, max: std.max(base, maximum) },
    };

  local failFastDestination(callee) = callee {
    outlier: if callee.outlier != null then callee.outlier else {
      consecutive5xx: 3, consecutiveGatewayFailure: null, interval: 5000, baseEjectionTime: 15000, maxEjectionPercent: 50,
    },
    circuit: {
      maxConnections: if callee.circuit != null then callee.circuit.maxConnections else 1024,
      maxPendingRequests: std.min(if callee.circuit != null then callee.circuit.maxPendingRequests else 1, 1),
      maxRequests: if callee.circuit != null then callee.circuit.maxRequests else 1024,
      maxRetries: 0,
    },
  };

  local route(u) =
    local callee = svc[u.service];
    local failFast = get(u, 'failurePolicy', get(D, 'failurePolicy', 'retry')) == 'fail_fast';
    local retries = if failFast then null else retriesOf(get(u, 'retries'));
    {
      service: u.service,
      localPort: u.localPort,
      protocol: callee.protocol,
      timeout: msOr(get(u, 'timeout', get(D, 'timeout')), 15000),
      retries: if retries != null && retries.attempts > 0 then retries else null,
      failFast: failFast,
      destination: if failFast then failFastDestination(callee) else callee,
    };

  // --- Envoy clusters (meshc.emit.envoy.clusters) ----------------------------------------------
  local isIp(address) = std.length(std.filter(function(c) !std.member('0123456789.:abcdefABCDEF', c), std.stringChars(address))) == 0
                        && std.length(std.findSubstr('.', address) + std.findSubstr(':', address)) > 0;
  local lbEndpoint(address, port, weight) =
    { endpoint: { address: socket(address, port) } } + (if weight != null then { load_balancing_weight: weight } else {});
  local assignment(clusterName, endpoints) = { cluster_name: clusterName, endpoints: [{ lb_endpoints: endpoints }] };
  local outlierDetection(o) = {
    consecutive_5xx: o.consecutive5xx, interval: duration(o.interval), base_ejection_time: duration(o.baseEjectionTime),
    max_ejection_percent: o.maxEjectionPercent, enforcing_success_rate: 0,
  } + (if o.consecutiveGatewayFailure != null then {
         consecutive_gateway_failure: o.consecutiveGatewayFailure, enforcing_consecutive_gateway_failure: 100,
       } else {});
  local circuitBreakers(c, routeRetries) =
    local minConcurrency = if c != null then c.maxRetries else 3;
    local threshold = { priority: 'DEFAULT' }
      + (if c != null then { max_connections: c.maxConnections, max_pending_requests: c.maxPendingRequests,
                             max_requests: c.maxRequests, max_retries: c.maxRetries } else {})
      + (if routeRetries && minConcurrency > 0 then {
           retry_budget: { budget_percent: { value: 20.0 }, min_retry_concurrency: minConcurrency },
         } else {});
    if std.length(std.objectFields(threshold)) > 1 then { thresholds: [threshold] } else null;
  local healthChecks(h, callee) = [{
    timeout: duration(h.timeout), interval: duration(h.interval), no_traffic_interval: duration(h.interval),
    healthy_threshold: h.healthyThreshold, unhealthy_threshold: h.unhealthyThreshold,
  } + (
    if callee.protocol == 'grpc' then { grpc_health_check: { authority: callee.name } }
    else if callee.protocol == 'tcp' then { tcp_health_check: {} }
    else { http_health_check: { path: h.path, host: callee.name }
                              + (if callee.protocol == 'http2' then { codec_client_type: 'HTTP2' } else {}) }
  )];
  local policies(callee, dest, routeRetries) =
    local breakers = circuitBreakers(dest.circuit, routeRetries);
    { connect_timeout: duration(dest.connectTimeout), lb_policy: LB[dest.lb.policy] }
    + (if dest.outlier != null then { outlier_detection: outlierDetection(dest.outlier) } else {})
    + (if breakers != null then { circuit_breakers: breakers } else {})
    + (if dest.health != null then { health_checks: healthChecks(dest.health, callee) } else {})
    + (if std.objectHas(H2, callee.protocol) then { typed_extension_protocol_options: H2_OPTIONS } else {});
  local clusterName(callee, v) = if v == null || v.implicit then callee.name else callee.name + '|' + v.name;
  local cluster(clusterName, type, endpoints, pol) =
    { '@type': CLUSTER_TYPE, name: clusterName, type: type, load_assignment: assignment(clusterName, endpoints) } + pol;
  local upstreamClusters(r) =
    local callee = svc[r.service];
    local pol = policies(callee, r.destination, r.retries != null);
    if !callee.deployed then
      local weighted = r.destination.lb.policy == 'weighted';
      local endpoints = [lbEndpoint(e.address, e.port, get(e, 'weight', if weighted then 1 else null)) for e in callee.endpointList];
      local static = std.all([isIp(e.address) for e in callee.endpointList]);
      [cluster(callee.name, if static then 'STATIC' else 'STRICT_DNS', endpoints, pol)]
    else [
      local address = '%s-%s.%s.svc.cluster.local' % [callee.name, v.name, ns];
      cluster(clusterName(callee, v), 'STRICT_DNS', [lbEndpoint(address, proxy.inboundPort, null)], pol)
      for v in callee.versionList
    ];
  local localApp(s) = {
    '@type': CLUSTER_TYPE, name: 'local_app', type: 'STATIC', connect_timeout: duration(s.connectTimeout),
    load_assignment: assignment('local_app', [lbEndpoint('127.0.0.1', s.port, null)]),
  } + (if std.objectHas(H2, s.protocol) then { typed_extension_protocol_options: H2_OPTIONS } else {});
  local targets(callee) =
    if !callee.deployed then [{ cluster: callee.name, weight: 100 }]
    else [{ cluster: clusterName(callee, v), weight: v.weight } for v in callee.versionList];

  // --- Envoy listeners and routes (meshc.emit.envoy.listeners, routes) ------------------------
  local clusterChoice(ts, hashed=false) =
    local positive = [t for t in ts if t.weight > 0];
    local split = if std.length(positive) > 0 then positive else ts;
    if std.length(split) == 1 then { cluster: split[0].cluster }
    else { weighted_clusters: { clusters: [{ name: t.cluster, weight: t.weight } for t in split] }
                              + (if hashed then { use_hash_policy: true } else {}) };
  local retryPolicy(r) = {
    retry_on: std.join(',', r.retryOn), num_retries: r.attempts,
    retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts',
                             typed_config: { '@type': 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate' } }],
    host_selection_retry_max_attempts: 3,
  } + (if r.perTryTimeout != null then { per_try_timeout: duration(r.perTryTimeout) } else {})
    + { retry_back_off: { base_interval: duration(r.backoff.base), max_interval: duration(r.backoff.max) } };
  local isHash(lb) = lb.policy == 'ring_hash' || lb.policy == 'maglev';
  local hashPolicy(lb) =
    if !isHash(lb) || lb.hashOn == null then []
    else if get(lb.hashOn, 'header') != null then [{ header: { header_name: lb.hashOn.header } }]
    else [{ connection_properties: { source_ip: true } }];
  local tcpHashPolicy(lb) =
    if isHash(lb) && lb.hashOn != null && get(lb.hashOn, 'sourceIp', false) then [{ source_ip: {} }] else [];
  local httpManager(statPrefix, routes, logs) = {
    name: HCM,
    typed_config: { '@type': HCM_TYPE, stat_prefix: statPrefix, codec_type: 'AUTO', route_config: routes, http_filters: [ROUTER] }
                  + (if std.length(logs) > 0 then { access_log: logs } else {}),
  };
  local tcpProxy(statPrefix, target, logs) = {
    name: TCP_PROXY,
    typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: statPrefix } + target
                  + (if std.length(logs) > 0 then { access_log: logs } else {}),
  };
  local listener(listenerName, address, port, direction, filter) = {
    '@type': LISTENER_TYPE, name: listenerName, address: socket(address, port), traffic_direction: direction,
    filter_chains: [{ filters: [filter] }],
  };
  local inbound(s) =
    local network =
      if s.protocol == 'tcp' then tcpProxy('inbound', { cluster: 'local_app' }, tcpLogs)
      else httpManager('inbound', {
        name: 'inbound',
        virtual_hosts: [{ name: 'local_app', domains: ['*'],
                          routes: [{ match: { prefix: '/' }, route: { cluster: 'local_app', timeout: '0s' } }] }],
      }, httpLogs);
    listener('inbound', '0.0.0.0', proxy.inboundPort, 'INBOUND', network);
  local outbound(r) =
    local listenerName = 'outbound|%d|%s' % [r.localPort, r.service];
    local ts = targets(svc[r.service]);
    local lb = r.destination.lb;
    local network =
      if r.protocol == 'tcp' then
        local hashing = tcpHashPolicy(lb);
        tcpProxy(listenerName, clusterChoice(ts) + (if std.length(hashing) > 0 then { hash_policy: hashing } else {}), tcpLogs)
      else
        local routeName = 'to|' + r.service;
        local hashing = hashPolicy(lb);
        local action = { timeout: duration(r.timeout) } + clusterChoice(ts, std.length(hashing) > 0)
                       + (if r.retries != null then { retry_policy: retryPolicy(r.retries) } else {})
                       + (if std.length(hashing) > 0 then { hash_policy: hashing } else {});
        httpManager(listenerName, {
          name: routeName,
          validate_clusters: false,
          virtual_hosts: [{ name: r.service, domains: ['*'], include_request_attempt_count: true,
                            routes: [{ name: routeName, match: { prefix: '/' }, route: action }] }],
        }, httpLogs);
    listener(listenerName, '127.0.0.1', r.localPort, 'OUTBOUND', network);

  local discovery(typeUrl, resources) = { version_info: hash(resources), type_url: typeUrl, resources: resources };
  local adminRoute(path) = {
    match: { path: path, headers: [{ name: ':method', string_match: { exact: 'GET' } }] },
    route: { cluster: 'envoy_admin' },
  };
  local fileSource(file) = {
    path_config_source: { path: configDir + '/' + file, watched_directory: { path: configDir } },
    resource_api_version: 'V3',
  };
  local bootstrap(s) = {
    node: { id: s.name + '.' + ns, cluster: s.name },
    admin: { address: socket('127.0.0.1', proxy.adminPort) },
    static_resources: {
      listeners: [{
        name: 'stats',
        address: socket('0.0.0.0', proxy.statsPort),
        filter_chains: [{ filters: [{
          name: HCM,
          typed_config: {
            '@type': HCM_TYPE, stat_prefix: 'stats', codec_type: 'AUTO', normalize_path: true, merge_slashes: true,
            route_config: { name: 'stats', virtual_hosts: [{
              name: 'stats', domains: ['*'],
              routes: [adminRoute('/stats/prometheus'), adminRoute('/ready'),
                       { match: { prefix: '/' }, direct_response: { status: 404 } }],
            }] },
            http_filters: [ROUTER],
          },
        }] }],
      }],
      clusters: [{
        name: 'envoy_admin', type: 'STATIC', connect_timeout: duration(250),
        load_assignment: assignment('envoy_admin', [{ endpoint: { address: socket('127.0.0.1', proxy.adminPort) } }]),
      }],
    },
    dynamic_resources: { cds_config: fileSource('cds.yaml'), lds_config: fileSource('lds.yaml') },
  };
  local sidecar(s) =
    local routes = [route(u) for u in s.upstreamList];
    [
      bootstrap(s),
      discovery(CLUSTER_TYPE, [localApp(s)] + std.flattenArrays([upstreamClusters(r) for r in routes])),
      discovery(LISTENER_TYPE, [inbound(s)] + [outbound(r) for r in routes]),
    ];

  // --- Kubernetes objects (meshc.emit.kubernetes) ----------------------------------------------
  local MANAGED = { 'app.kubernetes.io/managed-by': 'meshc', 'meshc.dev/mesh': name };
  local serviceLabels(s) = MANAGED { 'app.kubernetes.io/name': s, 'meshc.dev/service': s };
  local versionLabels(s, v) = serviceLabels(s) { 'app.kubernetes.io/version': v.name, 'meshc.dev/version': v.name };
  local withHash(obj) = obj { metadata+: { annotations: { 'meshc.dev/config-hash': hash(obj) } } };
  local object(apiVersion, kind, objName, labels) =
    { apiVersion: apiVersion, kind: kind, metadata: { name: objName, namespace: ns, labels: labels } };
  local APP_PROTOCOL = { http: 'http', http2: 'kubernetes.io/h2c', grpc: 'grpc', tcp: 'tcp' };
  local servicePort(protocol, port) =
    { name: protocol, appProtocol: APP_PROTOCOL[protocol], protocol: 'TCP', port: port, targetPort: proxy.inboundPort };
  local POD_SECURITY = { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } };
  local CONTAINER_SECURITY = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } };
  local port(portName, number) = { name: portName, containerPort: number, protocol: 'TCP' };
  local resources(r) = {
    requests: { cpu: r.cpuRequest, memory: r.memoryRequest },
    limits: { cpu: r.cpuLimit, memory: r.memoryLimit },
  };
  local seconds(millis) = std.max(1, std.ceil(millis / 1000));
  local appReadiness(s) =
    local h = s.health;
    if h == null then { tcpSocket: { port: s.port }, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 }
    else (
      if s.protocol == 'grpc' then { grpc: { port: s.port } }
      else if s.protocol == 'tcp' then { tcpSocket: { port: s.port } }
      else { httpGet: { path: h.path, port: s.port } }
    ) + {
      periodSeconds: seconds(h.interval), timeoutSeconds: seconds(h.timeout),
      successThreshold: h.healthyThreshold, failureThreshold: h.unhealthyThreshold,
    };
  local appLiveness(s) = {
    tcpSocket: { port: s.port }, initialDelaySeconds: 15, periodSeconds: 10,
    timeoutSeconds: if s.health != null then seconds(s.health.timeout) else 1, failureThreshold: 3,
  };
  local sidecarContainer = {
    name: 'envoy', image: proxy.image, args: ['-c', configDir + '/bootstrap.yaml'],
    ports: [port('envoy-inbound', proxy.inboundPort), port('envoy-stats', proxy.statsPort)],
    readinessProbe: { httpGet: { path: '/ready', port: proxy.statsPort }, periodSeconds: 2, timeoutSeconds: 1, failureThreshold: 3 },
    livenessProbe: { tcpSocket: { port: proxy.statsPort }, initialDelaySeconds: 15, periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3 },
    resources: resources(resourcesOf(proxy.resources, null, PROXY_RESOURCES)),
    securityContext: CONTAINER_SECURITY,
    volumeMounts: [{ name: 'envoy-config', mountPath: configDir, readOnly: true }, { name: 'envoy-tmp', mountPath: '/tmp' }],
  };
  local envVar(service) = std.strReplace(std.asciiUpper(service), '-', '_') + '_URL';
  local appEnv(s) =
    local upstreamEnv = { [envVar(u.service)]: (if svc[u.service].protocol == 'tcp' then 'tcp' else 'http') + '://127.0.0.1:%d' % u.localPort
                          for u in s.upstreamList };
    local env = upstreamEnv + get(s, 'env', {});
    [{ name: k, value: env[k] } for k in std.objectFields(env)];
  local appContainer(s, v) =
    local env = appEnv(s);
    {
      name: 'app', image: v.image, ports: [port(s.protocol, s.port)],
      readinessProbe: appReadiness(s), livenessProbe: appLiveness(s),
      resources: resources(v.resources), securityContext: CONTAINER_SECURITY,
      volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
    } + (if std.length(env) > 0 then { env: env } else {});
  local workloadName(s, v) = if v.implicit then s.name else s.name + '-' + v.name;
  local deployment(s, v, bootstrapHash) =
    local labels = versionLabels(s.name, v);
    withHash(object('apps/v1', 'Deployment', workloadName(s, v), labels) {
      spec: {
        replicas: v.replicas,
        selector: { matchLabels: { 'meshc.dev/service': s.name, 'meshc.dev/version': v.name } },
        template: {
          metadata: {
            labels: labels,
            annotations: {
              'meshc.dev/bootstrap-hash': bootstrapHash, 'kubectl.kubernetes.io/default-container': 'app',
              'prometheus.io/scrape': 'true', 'prometheus.io/port': std.toString(proxy.statsPort),
              'prometheus.io/path': '/stats/prometheus',
            },
          },
          spec: {
            serviceAccountName: s.name, automountServiceAccountToken: false, enableServiceLinks: false,
            securityContext: POD_SECURITY,
            containers: [appContainer(s, v), sidecarContainer],
            volumes: [
              { name: 'envoy-config', configMap: { name: s.name + '-envoy' } },
              { name: 'envoy-tmp', emptyDir: {} },
              { name: 'tmp', emptyDir: {} },
            ],
          },
        },
      },
    });
  local kubernetesObjects(s, envoyText) = [
    withHash(object('v1', 'ServiceAccount', s.name, serviceLabels(s.name)) { automountServiceAccountToken: false }),
    withHash(object('v1', 'ConfigMap', s.name + '-envoy', serviceLabels(s.name)) {
      data: { 'bootstrap.yaml': envoyText[0], 'cds.yaml': envoyText[1], 'lds.yaml': envoyText[2] },
    }),
    withHash(object('v1', 'Service', s.name, serviceLabels(s.name)) {
      spec: { type: 'ClusterIP', selector: { 'meshc.dev/service': s.name },
              ports: [servicePort(s.protocol, s.port)] },
    }),
  ] + [
    withHash(object('v1', 'Service', s.name + '-' + v.name, versionLabels(s.name, v)) {
      spec: { clusterIP: 'None', publishNotReadyAddresses: false,
              selector: { 'meshc.dev/service': s.name, 'meshc.dev/version': v.name },
              ports: [servicePort(s.protocol, proxy.inboundPort)] },
    })
    for v in s.versionList
  ] + [deployment(s, v, std.substr(std.md5(envoyText[0]), 0, 16)) for v in s.versionList];

  // --- files: each rendered as meshc renders them (indented JSON, sorted keys, `---` between) ----
  local stream(docs) = std.join('---\n', [pretty(d) for d in docs]);
  local deployed = [s for s in services if s.deployed];
  local rendered = [
    local envoyText = [pretty(d) for d in sidecar(s)];
    { name: s.name, envoy: envoyText, kubernetes: stream(kubernetesObjects(s, envoyText)) }
    for s in deployed
  ];
  local ENVOY_FILES = ['bootstrap.yaml', 'cds.yaml', 'lds.yaml'];
  {
    ['envoy/%s/%s' % [r.name, ENVOY_FILES[i]]]: r.envoy[i]
    for r in rendered
    for i in [0, 1, 2]
  } + {
    ['kubernetes/%s.yaml' % r.name]: r.kubernetes
    for r in rendered
  } + {
    'kubernetes/namespace.yaml': pretty(withHash({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: MANAGED } })),
    'kubernetes/kustomization.yaml': pretty({
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      resources: ['namespace.yaml'] + ['%s.yaml' % s.name for s in deployed],
    }),
  }
