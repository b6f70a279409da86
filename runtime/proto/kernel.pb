
Ò
arcana/admin/v1/admin.protoarcana.admin.v1"
ListPluginsRequest"M
Route
method (	Rmethod
path (	Rpath
handler (	Rhandler"Ö
Plugin
name (	Rname
version (	Rversion
state (	Rstate
source (	Rsource.
routes (2.arcana.admin.v1.RouteRroutes!
grpc_methods (	RgrpcMethods

last_error (	R	lastError"r
Failure
name (	Rname
source (	Rsource
errors (	Rerrors#
still_serving (RstillServing"~
ListPluginsResponse1
plugins (2.arcana.admin.v1.PluginRplugins4
failures (2.arcana.admin.v1.FailureRfailures2h
AdminServiceX
ListPlugins#.arcana.admin.v1.ListPluginsRequest$.arcana.admin.v1.ListPluginsResponsebproto3
é
arcana/auth/v1/auth.protoarcana.auth.v1"@
LoginRequest
email (	Remail
password (	Rpassword"5
RefreshRequest#
refresh_token (	RrefreshToken"4
LogoutRequest#
refresh_token (	RrefreshToken"
LogoutResponse"‘
	TokenPair!
access_token (	RaccessToken#
refresh_token (	RrefreshToken

token_type (	R	tokenType

expires_in (R	expiresIn2Þ
AuthService@
Login.arcana.auth.v1.LoginRequest.arcana.auth.v1.TokenPairD
Refresh.arcana.auth.v1.RefreshRequest.arcana.auth.v1.TokenPairG
Logout.arcana.auth.v1.LogoutRequest.arcana.auth.v1.LogoutResponsebproto3