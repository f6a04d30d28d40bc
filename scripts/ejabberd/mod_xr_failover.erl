%% mod_xr_failover: stanzas for a component slot whose connection is gone go
%% to a live connection of the same component instead of nowhere.
%%
%% With domain_balancing and component_number N, ejabberd 23.01 keeps N
%% route slots for a component domain (ejabberd_router_mnesia). When a
%% connection dies its slot stays with pid = undefined, and
%% ejabberd_router:do_route/2 drops every stanza hashed to it, silently,
%% until a new connection handshakes. This filter_packet hook computes the
%% slot the router is about to pick (balancing_route/4: phash2 of the
%% balancing value over the routes sorted by slot) and, when that slot has no
%% connection, hands the stanza to a live one (picked by the same value, so
%% one user's stanzas stay together) and drops it from the normal path.
%% Stanzas for live slots, and domains without domain_balancing, pass
%% untouched.
%%
%% Install: compile with erlc against ejabberd's code path, put the .beam on
%% ejabberd's code path (e.g. ERL_OPTIONS="-pa DIR" in ejabberdctl.cfg) and
%% add `mod_xr_failover: {}` to `modules:` (scripts/ejabberd.sh does both with
%% XR_EJ_FAILOVER=true).
-module(mod_xr_failover).
-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_doc/0]).
-export([filter_packet/1]).

%% ejabberd_router.hrl's record, by position (its header is not installed by Debian).
-record(route, {domain, server_host, pid, local_hint}).

start(_Host, _Opts) ->
    %% filter_packet is one global hook; adding it again for another host is a no-op.
    ejabberd_hooks:add(filter_packet, ?MODULE, filter_packet, 10),
    ok.

stop(_Host) ->
    ejabberd_hooks:delete(filter_packet, ?MODULE, filter_packet, 10),
    ok.

reload(_Host, _NewOpts, _OldOpts) -> ok.
depends(_Host, _Opts) -> [].
mod_options(_Host) -> [].
mod_doc() -> #{desc => ["Stanzas for a dead domain_balancing slot go to a live connection."]}.

filter_packet(drop) ->
    drop;
filter_packet(Pkt) ->
    %% Never in the way: anything unexpected leaves the stanza to the router.
    try reroute(Pkt) catch _:_ -> Pkt end.

reroute(Pkt) ->
    To = xmpp:get_to(Pkt),
    {_, LDomain, _} = jid:tolower(To),
    case maps:get(LDomain, ejabberd_option:domain_balancing(), undefined) of
        undefined ->
            Pkt;
        Opts ->
            Backend = ejabberd_router:get_backend(),
            case Backend:find_routes(LDomain) of
                {ok, Routes} when length(Routes) > 1 -> pick(Pkt, To, Opts, Routes);
                _ -> Pkt
            end
    end.

pick(Pkt, To, Opts, Routes) ->
    Value = balancing_value(xmpp:get_from(Pkt), To, maps:get(type, Opts, random)),
    Sorted = lists:ukeysort(#route.local_hint, Routes),
    Chosen = lists:nth(erlang:phash2(Value, length(Sorted)) + 1, Sorted),
    case alive(Chosen#route.pid) of
        true ->
            Pkt;
        false ->
            case [R || #route{pid = P} = R <- Sorted, alive(P)] of
                [] ->
                    Pkt;
                Live ->
                    Other = lists:nth(erlang:phash2(Value, length(Live)) + 1, Live),
                    ejabberd_cluster:send(Other#route.pid, {route, Pkt}),
                    drop
            end
    end.

%% A connection's process; one on this node that has just died counts as gone
%% (its slot is freed a moment later, when ejabberd_service:terminate/2 runs).
alive(Pid) when is_pid(Pid), node(Pid) =:= node() -> erlang:is_process_alive(Pid);
alive(Pid) -> is_pid(Pid).

%% ejabberd_router:get_domain_balancing/3 (not exported), 23.01.
balancing_value(_From, _To, random) -> erlang:system_time();
balancing_value(From, _To, source) -> jid:tolower(From);
balancing_value(_From, To, destination) -> jid:tolower(To);
balancing_value(From, _To, bare_source) -> jid:remove_resource(jid:tolower(From));
balancing_value(_From, To, bare_destination) -> jid:remove_resource(jid:tolower(To)).
